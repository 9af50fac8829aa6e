//! REAPI's `Directory` messages and their protobuf encoding, hand-written: the
//! deterministic encoding (what makes digests agree with other REAPI implementations)
//! and a strict decoder for blobs from an untrusted peer.
//!
//! The subset of `remote_execution.proto` modelled here, with field numbers:
//! `Directory { repeated FileNode files = 1; repeated DirectoryNode directories = 2;
//! repeated SymlinkNode symlinks = 3; }`, `FileNode { string name = 1; Digest digest = 2;
//! bool is_executable = 4; NodeProperties node_properties = 6; }`, `DirectoryNode {
//! string name = 1; Digest digest = 2; }`, `SymlinkNode { string name = 1; string target
//! = 2; }`, `NodeProperties { Timestamp mtime = 2; }`, `Digest { string hash = 1; int64
//! size_bytes = 2; }`, `google.protobuf.Timestamp { int64 seconds = 1; int32 nanos = 2; }`.
//! Every other field (NodeProperties' `properties` and `unix_mode`, the directory's and
//! symlink's `node_properties`) is refused on decoding rather than ignored.
//!
//! The decoder accepts exactly what the encoder writes: after parsing and checking the
//! canonical-form rules it encodes the result again and compares, which refuses at once
//! out-of-order and repeated fields, written-out defaults and overlong varints.

use super::MAX_DIRECTORY_BYTES;
use super::MAX_NAME_BYTES;
use super::MAX_TARGET_BYTES;
use super::Timestamp;
use super::TreeError;
use crate::digest::Digest;
use crate::digest::HASH_LEN;

/// A directory's entries, each list sorted by name, names unique across the three.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directory {
    pub files: Vec<FileNode>,
    pub directories: Vec<DirectoryNode>,
    pub symlinks: Vec<SymlinkNode>,
}

/// A regular file: its content's digest, whether it is executable, and (in our trees,
/// always) the client's mtime from `node_properties.mtime`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileNode {
    pub name: String,
    pub digest: Digest,
    pub is_executable: bool,
    pub mtime: Option<Timestamp>,
}

/// A subdirectory, named by the digest of its own encoded `Directory`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryNode {
    pub name: String,
    pub digest: Digest,
}

/// A symbolic link. REAPI allows absolute targets and `..` anywhere in them; whoever
/// materialises one decides what it may point at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymlinkNode {
    pub name: String,
    pub target: String,
}

/// Protobuf wire types used here.
const VARINT: u8 = 0;
const LEN: u8 = 2;

impl Directory {
    /// The deterministic protobuf encoding; its [`Digest`] names the directory.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for file in &self.files {
            put_file_entry(
                &mut out,
                &file.name,
                &file.digest,
                file.is_executable,
                file.mtime,
            );
        }
        for dir in &self.directories {
            put_directory_entry(&mut out, &dir.name, &dir.digest);
        }
        for link in &self.symlinks {
            put_symlink_entry(&mut out, &link.name, &link.target);
        }
        out
    }

    /// The digest of [`Directory::encode`].
    pub fn digest(&self) -> Digest {
        Digest::of(&self.encode())
    }

    /// Parses a `Directory` blob from an untrusted peer and checks it is canonical:
    /// well-formed protobuf of the modelled fields only, in the deterministic encoding,
    /// with valid names, digests, targets and mtimes, sorted and unique. The caller has
    /// checked the blob against its digest.
    pub fn decode(bytes: &[u8]) -> Result<Directory, TreeError> {
        if bytes.len() as u64 > MAX_DIRECTORY_BYTES {
            return Err(TreeError::TooLarge(bytes.len() as u64));
        }
        let mut directory = Directory::default();
        let mut reader = Reader(bytes);
        while let Some((field, wire)) = reader.key()? {
            match field {
                1 => directory.files.push(decode_file(reader.message(wire)?)?),
                2 => directory
                    .directories
                    .push(decode_directory_node(reader.message(wire)?)?),
                3 => directory
                    .symlinks
                    .push(decode_symlink(reader.message(wire)?)?),
                _ => return Err(unsupported("Directory", field)),
            }
        }
        directory.check()?;
        if directory.encode() != bytes {
            return Err(TreeError::NotCanonical);
        }
        Ok(directory)
    }

    /// Checks REAPI's canonical form and our limits on the entries: valid names, each
    /// list strictly sorted by name (bytewise), no name in two lists, valid targets and
    /// mtimes.
    pub fn check(&self) -> Result<(), TreeError> {
        fn sorted<'a>(names: impl Iterator<Item = &'a str>) -> Result<(), TreeError> {
            let mut previous: Option<&str> = None;
            for name in names {
                check_name(name)?;
                if previous.is_some_and(|previous| previous >= name) {
                    return Err(TreeError::NotSorted(name.to_owned()));
                }
                previous = Some(name);
            }
            Ok(())
        }
        sorted(self.files.iter().map(|file| file.name.as_str()))?;
        sorted(self.directories.iter().map(|dir| dir.name.as_str()))?;
        sorted(self.symlinks.iter().map(|link| link.name.as_str()))?;

        let mut names: Vec<&str> = (self.files.iter().map(|file| file.name.as_str()))
            .chain(self.directories.iter().map(|dir| dir.name.as_str()))
            .chain(self.symlinks.iter().map(|link| link.name.as_str()))
            .collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(TreeError::NotSorted(pair[0].to_owned()));
        }

        for file in &self.files {
            if let Some(mtime) = file.mtime {
                check_timestamp(mtime)?;
            }
        }
        for link in &self.symlinks {
            check_target(&link.target)?;
        }
        Ok(())
    }
}

/// Refuses a name no directory entry may have: empty, `.`, `..`, with `/` or NUL, or
/// longer than [`MAX_NAME_BYTES`].
pub(super) fn check_name(name: &str) -> Result<(), TreeError> {
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.len() > MAX_NAME_BYTES
        || name.bytes().any(|byte| byte == b'/' || byte == 0)
    {
        return Err(TreeError::BadName(name.to_owned()));
    }
    Ok(())
}

pub(super) fn check_target(target: &str) -> Result<(), TreeError> {
    if target.is_empty() || target.len() > MAX_TARGET_BYTES || target.contains('\0') {
        return Err(TreeError::BadTarget(target.to_owned()));
    }
    Ok(())
}

pub(super) fn check_timestamp(time: Timestamp) -> Result<(), TreeError> {
    if !time.is_valid() {
        return Err(TreeError::BadTimestamp {
            seconds: time.seconds,
            nanos: time.nanos,
        });
    }
    Ok(())
}

// ---- Encoding. Every message here has field numbers below 16, so a key is one byte.

fn varint_len(value: u64) -> usize {
    // 7 bits a byte; zero still takes one.
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_key(out: &mut Vec<u8>, field: u8, wire: u8) {
    out.push(field << 3 | wire);
}

/// Bytes of a length-delimited field whose payload is `len` bytes.
fn len_field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

fn put_len_field(out: &mut Vec<u8>, field: u8, payload: &[u8]) {
    put_key(out, field, LEN);
    put_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

fn digest_len(digest: &Digest) -> usize {
    let size = if digest.size_bytes == 0 {
        0
    } else {
        1 + varint_len(digest.size_bytes)
    };
    len_field_len(HASH_LEN * 2) + size
}

fn put_digest(out: &mut Vec<u8>, field: u8, digest: &Digest) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    put_key(out, field, LEN);
    put_varint(out, digest_len(digest) as u64);
    put_key(out, 1, LEN);
    put_varint(out, (HASH_LEN * 2) as u64);
    // Into a buffer first: one copy is much faster than 64 checked pushes.
    let mut text = [0u8; HASH_LEN * 2];
    for (pair, byte) in text.chunks_exact_mut(2).zip(digest.hash) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
    }
    out.extend_from_slice(&text);
    if digest.size_bytes != 0 {
        put_key(out, 2, VARINT);
        put_varint(out, digest.size_bytes);
    }
}

/// Protobuf writes a negative int64 or int32 as its 64-bit two's complement.
fn timestamp_len(time: Timestamp) -> usize {
    let seconds = if time.seconds == 0 {
        0
    } else {
        1 + varint_len(time.seconds as u64)
    };
    let nanos = if time.nanos == 0 {
        0
    } else {
        1 + varint_len(i64::from(time.nanos) as u64)
    };
    seconds + nanos
}

/// `NodeProperties { mtime = 2 }`: the only property our nodes carry.
fn node_properties_len(mtime: Timestamp) -> usize {
    len_field_len(timestamp_len(mtime))
}

fn put_node_properties(out: &mut Vec<u8>, field: u8, mtime: Timestamp) {
    put_key(out, field, LEN);
    put_varint(out, node_properties_len(mtime) as u64);
    put_key(out, 2, LEN);
    put_varint(out, timestamp_len(mtime) as u64);
    if mtime.seconds != 0 {
        put_key(out, 1, VARINT);
        put_varint(out, mtime.seconds as u64);
    }
    if mtime.nanos != 0 {
        put_key(out, 2, VARINT);
        put_varint(out, i64::from(mtime.nanos) as u64);
    }
}

/// Writes a `FileNode` as field 1 of a `Directory`. The tree builder calls this (and its
/// two siblings) on its own nodes, so both share one encoding without copying names
/// into a [`Directory`] first.
pub(super) fn put_file_entry(
    out: &mut Vec<u8>,
    name: &str,
    digest: &Digest,
    executable: bool,
    mtime: Option<Timestamp>,
) {
    let len = len_field_len(name.len())
        + len_field_len(digest_len(digest))
        + if executable { 2 } else { 0 }
        + mtime.map_or(0, |mtime| len_field_len(node_properties_len(mtime)));
    put_key(out, 1, LEN);
    put_varint(out, len as u64);
    put_len_field(out, 1, name.as_bytes());
    put_digest(out, 2, digest);
    if executable {
        put_key(out, 4, VARINT);
        out.push(1);
    }
    if let Some(mtime) = mtime {
        put_node_properties(out, 6, mtime);
    }
}

/// Writes a `DirectoryNode` as field 2 of a `Directory`.
pub(super) fn put_directory_entry(out: &mut Vec<u8>, name: &str, digest: &Digest) {
    let len = len_field_len(name.len()) + len_field_len(digest_len(digest));
    put_key(out, 2, LEN);
    put_varint(out, len as u64);
    put_len_field(out, 1, name.as_bytes());
    put_digest(out, 2, digest);
}

/// Writes a `SymlinkNode` as field 3 of a `Directory`.
pub(super) fn put_symlink_entry(out: &mut Vec<u8>, name: &str, target: &str) {
    let len = len_field_len(name.len())
        + if target.is_empty() {
            0
        } else {
            len_field_len(target.len())
        };
    put_key(out, 3, LEN);
    put_varint(out, len as u64);
    put_len_field(out, 1, name.as_bytes());
    if !target.is_empty() {
        put_len_field(out, 2, target.as_bytes());
    }
}

// ---- Decoding.

/// The unread rest of one message.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, TreeError> {
        let mut value = 0u64;
        for (at, &byte) in self.0.iter().enumerate().take(10) {
            // The tenth byte holds bit 63 only.
            if at == 9 && byte > 1 {
                break;
            }
            value |= u64::from(byte & 0x7f) << (7 * at);
            if byte < 0x80 {
                self.0 = &self.0[at + 1..];
                return Ok(value);
            }
        }
        Err(TreeError::Malformed("bad or truncated varint"))
    }

    /// The next field's number and wire type, or `None` at the end of the message.
    fn key(&mut self) -> Result<Option<(u64, u8)>, TreeError> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 || field > u64::from(u32::MAX >> 3) {
            return Err(TreeError::Malformed("bad field number"));
        }
        Ok(Some((field, (key & 7) as u8)))
    }

    /// A length-delimited payload (a string or a sub-message).
    fn message(&mut self, wire: u8) -> Result<&'a [u8], TreeError> {
        if wire != LEN {
            return Err(TreeError::Malformed("wrong wire type"));
        }
        let len = self.varint()?;
        if len > self.0.len() as u64 {
            return Err(TreeError::Malformed("truncated field"));
        }
        let (payload, rest) = self.0.split_at(len as usize);
        self.0 = rest;
        Ok(payload)
    }

    fn string(&mut self, wire: u8) -> Result<&'a str, TreeError> {
        std::str::from_utf8(self.message(wire)?)
            .map_err(|_| TreeError::Malformed("string not UTF-8"))
    }

    fn number(&mut self, wire: u8) -> Result<u64, TreeError> {
        if wire != VARINT {
            return Err(TreeError::Malformed("wrong wire type"));
        }
        self.varint()
    }
}

fn unsupported(message: &'static str, field: u64) -> TreeError {
    TreeError::UnsupportedField { message, field }
}

/// A `Digest` as parsed, checked once the entry's name is known (for the error).
struct RawDigest<'a> {
    hash: &'a str,
    size: u64,
}

impl RawDigest<'_> {
    fn check(&self, name: &str) -> Result<Digest, TreeError> {
        let bad = || TreeError::BadDigest(name.to_owned());
        let hash = Digest::parse_hash(self.hash).map_err(|_| bad())?;
        // int64 on the wire: a size with bit 63 set is negative.
        if self.size > i64::MAX as u64 {
            return Err(bad());
        }
        Ok(Digest {
            hash,
            size_bytes: self.size,
        })
    }
}

fn decode_digest(bytes: &[u8]) -> Result<RawDigest<'_>, TreeError> {
    let mut digest = RawDigest { hash: "", size: 0 };
    let mut reader = Reader(bytes);
    while let Some((field, wire)) = reader.key()? {
        match field {
            1 => digest.hash = reader.string(wire)?,
            2 => digest.size = reader.number(wire)?,
            _ => return Err(unsupported("Digest", field)),
        }
    }
    Ok(digest)
}

fn decode_file(bytes: &[u8]) -> Result<FileNode, TreeError> {
    let mut name = "";
    let mut digest = None;
    let mut is_executable = false;
    let mut mtime = None;
    let mut reader = Reader(bytes);
    while let Some((field, wire)) = reader.key()? {
        match field {
            1 => name = reader.string(wire)?,
            2 => digest = Some(decode_digest(reader.message(wire)?)?),
            // Any non-zero varint parses as true; only 1 survives the canonical check.
            4 => is_executable = reader.number(wire)? != 0,
            6 => mtime = decode_node_properties(reader.message(wire)?)?,
            _ => return Err(unsupported("FileNode", field)),
        }
    }
    let digest = digest.ok_or(TreeError::Malformed("file without a digest"))?;
    Ok(FileNode {
        digest: digest.check(name)?,
        name: name.to_owned(),
        is_executable,
        mtime,
    })
}

fn decode_node_properties(bytes: &[u8]) -> Result<Option<Timestamp>, TreeError> {
    let mut mtime = None;
    let mut reader = Reader(bytes);
    while let Some((field, wire)) = reader.key()? {
        match field {
            2 => mtime = Some(decode_timestamp(reader.message(wire)?)?),
            _ => return Err(unsupported("NodeProperties", field)),
        }
    }
    Ok(mtime)
}

fn decode_timestamp(bytes: &[u8]) -> Result<Timestamp, TreeError> {
    let mut time = Timestamp::default();
    let mut reader = Reader(bytes);
    while let Some((field, wire)) = reader.key()? {
        match field {
            1 => time.seconds = reader.number(wire)? as i64,
            // int32 keeps the low 32 bits, as protobuf's parsers do; the canonical check
            // refuses anything that was not written that way.
            2 => time.nanos = reader.number(wire)? as i32,
            _ => return Err(unsupported("Timestamp", field)),
        }
    }
    Ok(time)
}

fn decode_directory_node(bytes: &[u8]) -> Result<DirectoryNode, TreeError> {
    let mut name = "";
    let mut digest = None;
    let mut reader = Reader(bytes);
    while let Some((field, wire)) = reader.key()? {
        match field {
            1 => name = reader.string(wire)?,
            2 => digest = Some(decode_digest(reader.message(wire)?)?),
            _ => return Err(unsupported("DirectoryNode", field)),
        }
    }
    let digest = digest.ok_or(TreeError::Malformed("directory without a digest"))?;
    Ok(DirectoryNode {
        digest: digest.check(name)?,
        name: name.to_owned(),
    })
}

fn decode_symlink(bytes: &[u8]) -> Result<SymlinkNode, TreeError> {
    let mut name = "";
    let mut target = "";
    let mut reader = Reader(bytes);
    while let Some((field, wire)) = reader.key()? {
        match field {
            1 => name = reader.string(wire)?,
            2 => target = reader.string(wire)?,
            _ => return Err(unsupported("SymlinkNode", field)),
        }
    }
    Ok(SymlinkNode {
        name: name.to_owned(),
        target: target.to_owned(),
    })
}
