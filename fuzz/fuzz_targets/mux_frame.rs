//! A byte stream of mux frames from a hostile peer (a box, a daemon, or a wrapper on
//! the daemon's socket): frames are read until the stream ends or breaks, and every
//! payload goes through every payload decoder (remote preprocessing's too). Nothing may panic or allocate beyond the
//! limits; frames and decoded messages must round-trip.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sshcc::daemon::ipc::{Acquire, Placement, RemoteReply, RemoteRequest};
use sshcc::protocol::Version;
use sshcc::protocol::mux::Hello;
use sshcc::protocol::mux::frame::{Compression, Frame, read_frame, write_frame};
use sshcc::protocol::mux::remote::{self, RemoteAnswer, RemoteJob};
use sshcc::toolchain::Fingerprint;
use sshcc::tree::Directory;

fuzz_target!(|data: &[u8]| {
    sshcc_fuzz::block_on(async {
        let mut input = data;
        while let Ok(Some(frame)) = read_frame(&mut input).await {
            check_frame_round_trip(&frame).await;
            check_payload(&frame.payload).await;
        }
    });
});

async fn check_frame_round_trip(frame: &Frame) {
    for compression in [Compression::None, Compression::Zstd] {
        let mut stream = Vec::new();
        write_frame(&mut stream, frame, compression)
            .await
            .expect("writing to memory");
        let mut input = &stream[..];
        let again = read_frame(&mut input)
            .await
            .unwrap_or_else(|err| panic!("re-encoded frame ({compression:?}) fails: {err}"));
        assert_eq!(
            again.as_ref(),
            Some(frame),
            "frame round trip ({compression:?})"
        );
        assert!(
            input.is_empty(),
            "frame re-read left bytes ({compression:?})"
        );
    }
}

async fn check_payload(payload: &[u8]) {
    // HELLO (box → daemon).
    if let Ok(hello) = Hello::decode(payload) {
        assert_eq!(
            Hello::decode(&hello.encode()),
            Ok(hello),
            "hello round trip"
        );
    }
    // ACQUIRE and ASSIGNED (wrapper ↔ daemon).
    if let Ok(acquire) = Acquire::decode(payload) {
        assert_eq!(
            Acquire::decode(&acquire.encode()),
            Ok(acquire),
            "acquire round trip"
        );
    }
    if let Ok(placement) = Placement::decode(payload) {
        assert_eq!(
            Placement::decode(&placement.encode()),
            Ok(placement),
            "placement round trip"
        );
    }
    // JOB (daemon → box, wrapper → daemon) and RESULT (the answers).
    sshcc_fuzz::check_job(payload).await;
    sshcc_fuzz::check_response(payload, Version::V1).await;
    // IDENTITY (box → daemon).
    let _ = serde_json::from_slice::<Result<Fingerprint, String>>(payload);
    // Remote preprocessing: FIND_MISSING/MISSING, PUT_BLOBS, REMOTE_JOB and
    // REMOTE_RESULT (daemon ↔ box), REMOTE_JOB/REMOTE_REPLY (wrapper ↔ daemon), and the
    // tree's Directory blobs the box decodes.
    if let Ok(digests) = remote::decode_digests(payload) {
        assert_eq!(
            remote::encode_digests(&digests),
            payload,
            "digest list round trip"
        );
    }
    if let Ok(blobs) = remote::decode_blobs(payload) {
        let again = remote::encode_blobs(blobs.iter().map(|(digest, content)| (digest, *content)));
        assert_eq!(again, payload, "blob batch round trip");
    }
    if let Ok(job) = RemoteJob::decode(payload) {
        assert_eq!(
            RemoteJob::decode(&job.encode()),
            Ok(job),
            "remote job round trip"
        );
    }
    if let Ok(answer) = RemoteAnswer::decode(payload) {
        assert_eq!(
            RemoteAnswer::decode(&answer.encode()),
            Ok(answer),
            "remote answer round trip"
        );
    }
    if let Ok(request) = RemoteRequest::decode(payload) {
        assert_eq!(
            RemoteRequest::decode(&request.encode()),
            Ok(request),
            "remote request round trip"
        );
    }
    if let Ok(reply) = RemoteReply::decode(payload) {
        assert_eq!(
            RemoteReply::decode(&reply.encode()),
            Ok(reply),
            "remote reply round trip"
        );
    }
    if let Ok(directory) = Directory::decode(payload) {
        // The decoder accepts only the canonical encoding.
        assert_eq!(directory.encode(), payload, "directory round trip");
    }
}
