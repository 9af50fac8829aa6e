//! Running a remote-preprocessed job on a mux link: the blobs of its input tree that
//! the box lacks go up first (each at most once per box while the daemon lives), then
//! the job; what the box evicted in between is sent again when it says so.
//!
//! Which blobs a box holds is remembered per host ([`KnownBlobs`]), so a warm build
//! asks nothing before a job: only blobs new to this daemon are looked up with
//! FIND_MISSING, and only the missing ones are read from disk and sent.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

use crate::digest::Digest;
use crate::inputs::JobInputs;
use crate::mux::client::{MuxClient, MuxError, Observer};
use crate::protocol::mux::remote::{
    BLOB_FRAME_BUDGET, MAX_BLOBS_PER_FRAME, RemoteAnswer, RemoteCompile, RemoteJob,
};

/// How many times a job is sent again after the box reported blobs missing (evicted
/// between the upload and the job, by other jobs or another daemon filling the same
/// store) before it waits for the host to itself.
const MISSING_RETRIES: usize = 2;

/// Where every blob of one job's input tree comes from.
#[derive(Debug, Default)]
pub struct JobBlobs {
    /// Blobs made in memory: the tree's directories.
    pub memory: HashMap<Digest, Vec<u8>>,
    /// File contents, read from the client's files when they must be sent.
    pub files: HashMap<Digest, PathBuf>,
    /// Whether a file names `__DATE__` or `__TIME__` ([`JobInputs::reads_the_clock`]):
    /// an engine's action cache must not answer the job nor keep its result.
    pub reads_the_clock: bool,
}

impl JobBlobs {
    pub(in crate::dispatch) fn all(&self) -> impl Iterator<Item = &Digest> {
        self.memory.keys().chain(self.files.keys())
    }

    /// The blob's content, checked against its digest: a file rewritten since it was
    /// hashed must not go up under its old digest (the box would refuse it anyway).
    pub(in crate::dispatch) async fn read(&self, digest: &Digest) -> Result<Vec<u8>, JobFailure> {
        if let Some(bytes) = self.memory.get(digest) {
            return Ok(bytes.clone());
        }
        let path = self.files.get(digest).ok_or_else(|| {
            JobFailure::Box(format!(
                "the box asked for {digest}, which is not in the job"
            ))
        })?;
        match tokio::fs::read(path).await {
            Ok(content) if Digest::of(&content) == *digest => Ok(content),
            _ => Err(JobFailure::Changed(format!(
                "{} changed while it was sent",
                path.display()
            ))),
        }
    }
}

/// The blobs a daemon knows a box's store holds (it sent them, or the box said it had
/// them), those another job is sending right now, and what asking and sending cost.
/// Eviction on the box can make the set wrong; the box then answers `Missing`.
#[derive(Debug, Default)]
pub struct KnownBlobs {
    state: Mutex<BlobState>,
    /// Every job holds a read turn while it uploads and runs; one whose inputs the
    /// store keeps losing takes the write turn, running alone once the others are done
    /// (tokio's lock is fair: jobs arriving meanwhile queue behind it).
    turns: tokio::sync::RwLock<()>,
    pub counts: StoreCounts,
}

#[derive(Debug, Default)]
struct BlobState {
    known: HashSet<Digest>,
    /// Blobs a job is looking up or sending; the receiver closes when it is done, so
    /// concurrent jobs wait for it instead of sending the same header again.
    in_flight: HashMap<Digest, watch::Receiver<()>>,
}

/// The blobs one job took on to look up and send; released (and those waiting on
/// them woken) when dropped, whether or not the upload succeeded.
struct Claim<'a> {
    known: &'a KnownBlobs,
    digests: Vec<Digest>,
    _done: watch::Sender<()>,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut state = self.known.state.lock().expect("known blobs lock");
        for digest in &self.digests {
            state.in_flight.remove(digest);
        }
    }
}
/// What a host's store was asked and sent, for `sshcc status`.
#[derive(Debug, Default)]
pub struct StoreCounts {
    pub jobs: AtomicU64,
    pub looked_up: AtomicU64,
    pub missing: AtomicU64,
    pub sent: AtomicU64,
    pub bytes_sent: AtomicU64,
}

impl KnownBlobs {
    /// Of `digests`, those this job must look up and send (now claimed by it) and the
    /// uploads of other jobs it must wait for; blobs known to be held are neither.
    fn claim<'a>(
        &'a self,
        digests: impl Iterator<Item = &'a Digest>,
    ) -> (Claim<'a>, Vec<watch::Receiver<()>>) {
        let (done, receiver) = watch::channel(());
        let mut state = self.state.lock().expect("known blobs lock");
        let mut mine = Vec::new();
        let mut theirs = Vec::new();
        for digest in digests {
            if state.known.contains(digest) {
                continue;
            }
            match state.in_flight.get(digest) {
                Some(upload) => theirs.push(upload.clone()),
                None => {
                    state.in_flight.insert(*digest, receiver.clone());
                    mine.push(*digest);
                }
            }
        }
        let claim = Claim {
            known: self,
            digests: mine,
            _done: done,
        };
        (claim, theirs)
    }

    fn learn(&self, digests: impl IntoIterator<Item = Digest>) {
        self.state
            .lock()
            .expect("known blobs lock")
            .known
            .extend(digests);
    }

    fn forget(&self, digests: &[Digest]) {
        let mut state = self.state.lock().expect("known blobs lock");
        for digest in digests {
            state.known.remove(digest);
        }
    }
}

/// Why a remote-preprocessed job has no compile result.
#[derive(Debug, thiserror::Error)]
pub enum JobFailure {
    /// The link broke or the box's answer was unreadable.
    #[error("{0}")]
    Link(#[from] MuxError),
    /// The link failed or the box misbehaved: the host is at fault.
    #[error("{0}")]
    Box(String),
    /// An input changed on the client while the job was prepared or sent: compile
    /// here, where the current files are.
    #[error("{0}")]
    Changed(String),
    /// The box's store cannot keep the job's inputs long enough (it is smaller than
    /// what the jobs running at once need): preprocess here, where nothing is stored.
    #[error("{0}")]
    StoreTooSmall(String),
    /// The box refused the job (distcc's exit code and the reason).
    #[error("{reason}")]
    Refused { code: u8, reason: String },
}

/// Uploads what the box lacks of `blobs`, then runs `job` (whose root is among them).
///
/// Jobs that together need more than the box's store holds evict each other's inputs
/// between upload and run; one that still finds blobs missing after [`MISSING_RETRIES`]
/// uploads waits until it has the host to itself and tries once more, so a store too
/// small for the jobs at once slows them down instead of sending every one of them
/// back to be preprocessed here.
pub async fn run(
    client: &MuxClient,
    job: &RemoteJob,
    blobs: &JobBlobs,
    known: &KnownBlobs,
    observer: Option<Observer>,
) -> Result<RemoteCompile, JobFailure> {
    let shared_turn = known.turns.read().await;
    let (claim, others) = known.claim(blobs.all());
    if !claim.digests.is_empty() {
        send_missing(client, blobs, &claim.digests, known).await?;
    }
    drop(claim);
    // Another job's upload of a blob this one needs: wait until it is over (had it
    // failed, the box answers Missing below and this job sends the blob itself).
    for mut upload in others {
        let _ = upload.changed().await;
    }
    let lost = match attempt(client, job, blobs, known, &observer, MISSING_RETRIES).await? {
        Attempt::Compiled(compile) => return Ok(compile),
        Attempt::StillMissing(lost) => lost,
    };
    drop(shared_turn);
    tracing::debug!(
        "the box's store lost {lost} of the job's blobs again; sending the job once more \
         with no other job running on the host"
    );
    let _sole_turn = known.turns.write().await;
    // Asking for every blob of the job marks those the box holds as just used, and
    // what goes up is newer still, so what this upload evicts is other jobs' inputs.
    let all: Vec<Digest> = blobs.all().copied().collect();
    send_missing(client, blobs, &all, known).await?;
    match attempt(client, job, blobs, known, &observer, 0).await? {
        Attempt::Compiled(compile) => Ok(compile),
        Attempt::StillMissing(lost) => Err(JobFailure::StoreTooSmall(format!(
            "the box's content store lost {lost} of the job's blobs even with no other job \
             running: it is too small for this job's inputs (--cache-size)"
        ))),
    }
}

/// Asks the box which of `digests` it lacks and sends those; all are known held after.
async fn send_missing(
    client: &MuxClient,
    blobs: &JobBlobs,
    digests: &[Digest],
    known: &KnownBlobs,
) -> Result<(), JobFailure> {
    let missing = client.find_missing(digests).await?;
    let counts = &known.counts;
    counts
        .looked_up
        .fetch_add(digests.len() as u64, Ordering::Relaxed);
    counts
        .missing
        .fetch_add(missing.len() as u64, Ordering::Relaxed);
    upload(client, blobs, &missing, counts).await?;
    known.learn(digests.iter().copied());
    Ok(())
}

/// How a job fared after at most so many uploads of what the box said it lacked.
enum Attempt {
    Compiled(RemoteCompile),
    /// How many blobs were still missing at the last try.
    StillMissing(usize),
}

/// Runs `job`, sending what the box says it lacks up to `uploads` times.
async fn attempt(
    client: &MuxClient,
    job: &RemoteJob,
    blobs: &JobBlobs,
    known: &KnownBlobs,
    observer: &Option<Observer>,
    uploads: usize,
) -> Result<Attempt, JobFailure> {
    let mut sent = 0;
    loop {
        match client.run_remote(job, observer.clone()).await? {
            RemoteAnswer::Compiled(compile) => {
                known.counts.jobs.fetch_add(1, Ordering::Relaxed);
                return Ok(Attempt::Compiled(compile));
            }
            RemoteAnswer::Refused { code, reason } => {
                return Err(JobFailure::Refused { code, reason });
            }
            RemoteAnswer::Missing(missing) if sent < uploads => {
                tracing::debug!(
                    "the box lacks {} blobs of the job; sending them",
                    missing.len()
                );
                sent += 1;
                known.forget(&missing);
                upload(client, blobs, &missing, &known.counts).await?;
                known.learn(missing);
            }
            RemoteAnswer::Missing(missing) => return Ok(Attempt::StillMissing(missing.len())),
        }
    }
}

/// Sends `missing` in frames of at most [`BLOB_FRAME_BUDGET`] bytes (a larger blob goes
/// alone) and [`MAX_BLOBS_PER_FRAME`] blobs.
async fn upload(
    client: &MuxClient,
    blobs: &JobBlobs,
    missing: &[Digest],
    counts: &StoreCounts,
) -> Result<(), JobFailure> {
    let mut batch: Vec<(Digest, Vec<u8>)> = Vec::new();
    let mut batch_bytes = 0;
    for digest in missing {
        let content = blobs.read(digest).await?;
        if !batch.is_empty()
            && (batch_bytes + content.len() > BLOB_FRAME_BUDGET
                || batch.len() == MAX_BLOBS_PER_FRAME)
        {
            send(client, &batch).await?;
            batch.clear();
            batch_bytes = 0;
        }
        batch_bytes += content.len();
        counts.sent.fetch_add(1, Ordering::Relaxed);
        counts
            .bytes_sent
            .fetch_add(content.len() as u64, Ordering::Relaxed);
        batch.push((*digest, content));
    }
    if !batch.is_empty() {
        send(client, &batch).await?;
    }
    Ok(())
}

async fn send(client: &MuxClient, batch: &[(Digest, Vec<u8>)]) -> Result<(), JobFailure> {
    client
        .put_blobs(batch)
        .await?
        .map_err(|why| JobFailure::Box(format!("the box refused a blob: {why}")))
}

/// The job for the box and the blobs of its input tree, from what the daemon found;
/// `Err` (why) when the inputs cannot form a tree, so the job is preprocessed here.
pub fn assemble(mut job: RemoteJob, inputs: &JobInputs) -> Result<(RemoteJob, JobBlobs), String> {
    let tree = inputs
        .input_tree()
        .map_err(|err| format!("no input tree: {err}"))?;
    job.root = tree.root();
    let mut args = inputs.leading_args.clone();
    args.append(&mut job.args);
    args.extend(inputs.extra_args.iter().cloned());
    job.args = args;
    let blobs = JobBlobs {
        memory: tree
            .directories()
            .map(|(digest, blob)| (*digest, blob.to_vec()))
            .collect(),
        files: inputs
            .files()
            .map(|(path, digest)| (*digest, path.to_path_buf()))
            .collect(),
        reads_the_clock: inputs.reads_the_clock,
    };
    Ok((job, blobs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_blob_another_job_is_sending_is_waited_for_not_sent_again() {
        let known = KnownBlobs::default();
        let (a, b, c) = (Digest::of(b"a"), Digest::of(b"b"), Digest::of(b"c"));
        let (ab, bc, abc) = ([a, b], [b, c], [a, b, c]);
        let (first, waits) = known.claim(ab.iter());
        assert_eq!(first.digests, [a, b]);
        assert!(waits.is_empty());
        // A second job needing b and c sends only c, and waits for b.
        let (second, mut waits) = known.claim(bc.iter());
        assert_eq!(second.digests, [c]);
        assert_eq!(waits.len(), 1);
        known.learn(first.digests.iter().copied());
        drop(first);
        waits.pop().unwrap().changed().await.unwrap_err();
        drop(second);
        // Known blobs are neither claimed nor waited for; released ones are free again.
        let (third, waits) = known.claim(abc.iter());
        assert_eq!(third.digests, [c]);
        assert!(waits.is_empty());
    }
}
