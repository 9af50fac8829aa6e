//! Content digests: what a blob is called in the box's store, in the mux protocol's
//! "which of these do you lack" messages, and (issue 14) in a REAPI CAS.
//!
//! A [`Digest`] has the shape of REAPI's `build.bazel.remote.execution.v2.Digest`: the
//! SHA-256 of the content and its length, written `hash/size` with the hash in lowercase
//! hex (the form REAPI uses in ByteStream resource names). Carrying the size beside the
//! hash lets a receiver bound a transfer before it starts and reject a wrong-sized blob
//! without hashing it.
//!
//! Why SHA-256 rather than BLAKE3:
//! - it is REAPI's default digest function, which every CAS implements (BLAKE3 is an
//!   optional extension), so blobs and input trees built here can go to issue 14's REAPI
//!   engines without being hashed a second time;
//! - `sha2` is already a dependency (toolchain fingerprints) and uses the CPU's SHA
//!   extensions where present;
//! - BLAKE3's advantage is throughput on large inputs, but the inputs are headers of a
//!   few kilobytes, each hashed once per daemon life (the client keeps a file-state
//!   cache), so hashing speed is not what limits a build.
//!
//! Everything here is plain synchronous code with no I/O policy of its own, so the
//! client, the box and a REAPI client can all build on it.

use std::fmt;
use std::io::{self, Read};
use std::path::Path;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// Bytes in a SHA-256 hash.
pub const HASH_LEN: usize = 32;

/// Bytes in [`Digest::to_bytes`]: the hash, then the size as a big-endian `u64`.
pub const WIRE_LEN: usize = HASH_LEN + 8;

/// The read size of the streaming hashers: large enough that syscalls do not dominate
/// hashing, small enough to sit in the cache.
const CHUNK: usize = 64 * 1024;

/// A blob's name: SHA-256 of its content and its length in bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    pub hash: [u8; HASH_LEN],
    pub size_bytes: u64,
}

/// Why a text or wire digest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseDigestError {
    #[error("digest {0:?} is not of the form HASH/SIZE")]
    NoSeparator(String),
    #[error("digest hash {0:?} is not {len} lowercase hex digits", len = HASH_LEN * 2)]
    BadHash(String),
    #[error("digest size {0:?} is not a decimal number of bytes")]
    BadSize(String),
    #[error("binary digest of {0} bytes, expected {WIRE_LEN}")]
    BadLength(usize),
}

impl Digest {
    /// The digest of no bytes at all. REAPI treats it as always present; so does the store.
    pub const EMPTY: Digest = Digest {
        hash: [
            0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f,
            0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b,
            0x78, 0x52, 0xb8, 0x55,
        ],
        size_bytes: 0,
    };

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        let mut hasher = Hasher::new();
        hasher.update(bytes);
        hasher.finish()
    }

    /// The digest of everything `reader` yields, read in chunks so that a large input is
    /// never held in memory.
    pub fn of_reader(mut reader: impl Read) -> io::Result<Digest> {
        let mut hasher = Hasher::new();
        let mut buffer = vec![0; CHUNK];
        loop {
            match reader.read(&mut buffer) {
                Ok(0) => return Ok(hasher.finish()),
                Ok(read) => hasher.update(&buffer[..read]),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
    }

    /// The digest of the file at `path` (following symlinks, as a compiler reading it
    /// would).
    pub fn of_file(path: &Path) -> io::Result<Digest> {
        Digest::of_reader(std::fs::File::open(path)?)
    }

    /// Whether this names the empty blob.
    pub fn is_empty(&self) -> bool {
        self.size_bytes == 0
    }

    /// The hash in lowercase hex (64 characters), as REAPI and the store's file names
    /// spell it.
    pub fn hash_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = String::with_capacity(HASH_LEN * 2);
        for byte in self.hash {
            text.push(DIGITS[usize::from(byte >> 4)] as char);
            text.push(DIGITS[usize::from(byte & 0xf)] as char);
        }
        text
    }

    /// Parses a hash in the exact form [`Digest::hash_hex`] writes: 64 lowercase hex
    /// digits. Uppercase is refused so that each digest has one spelling (it becomes a
    /// file name).
    pub fn parse_hash(text: &str) -> Result<[u8; HASH_LEN], ParseDigestError> {
        let bad = || ParseDigestError::BadHash(text.to_owned());
        let digits = text.as_bytes();
        if digits.len() != HASH_LEN * 2 {
            return Err(bad());
        }
        let nibble = |digit: u8| match digit {
            b'0'..=b'9' => Some(digit - b'0'),
            b'a'..=b'f' => Some(digit - b'a' + 10),
            _ => None,
        };
        let mut hash = [0u8; HASH_LEN];
        for (byte, pair) in hash.iter_mut().zip(digits.chunks_exact(2)) {
            *byte = (nibble(pair[0]).ok_or_else(bad)? << 4) | nibble(pair[1]).ok_or_else(bad)?;
        }
        Ok(hash)
    }

    /// The fixed-size binary form for wire protocols: hash, then size (big-endian).
    pub fn to_bytes(&self) -> [u8; WIRE_LEN] {
        let mut bytes = [0u8; WIRE_LEN];
        bytes[..HASH_LEN].copy_from_slice(&self.hash);
        bytes[HASH_LEN..].copy_from_slice(&self.size_bytes.to_be_bytes());
        bytes
    }

    /// Reads [`Digest::to_bytes`]'s form back; `bytes` must be exactly [`WIRE_LEN`] long.
    pub fn from_bytes(bytes: &[u8]) -> Result<Digest, ParseDigestError> {
        if bytes.len() != WIRE_LEN {
            return Err(ParseDigestError::BadLength(bytes.len()));
        }
        let mut hash = [0u8; HASH_LEN];
        hash.copy_from_slice(&bytes[..HASH_LEN]);
        let mut size = [0u8; 8];
        size.copy_from_slice(&bytes[HASH_LEN..]);
        Ok(Digest {
            hash,
            size_bytes: u64::from_be_bytes(size),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.hash_hex(), self.size_bytes)
    }
}

// The text form in Debug too: an array of 32 numbers helps no one reading a log.
impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = ParseDigestError;

    /// Parses `hash/size`, strictly: lowercase hex, a decimal size without sign or
    /// leading `+`.
    fn from_str(text: &str) -> Result<Digest, ParseDigestError> {
        let (hash, size) = text
            .split_once('/')
            .ok_or_else(|| ParseDigestError::NoSeparator(text.to_owned()))?;
        let hash = Digest::parse_hash(hash)?;
        // u64::from_str accepts a leading '+'; a digest has one spelling.
        if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseDigestError::BadSize(size.to_owned()));
        }
        let size_bytes = size
            .parse()
            .map_err(|_| ParseDigestError::BadSize(size.to_owned()))?;
        Ok(Digest { hash, size_bytes })
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An incremental digest: feed it bytes as they pass by, then [`Hasher::finish`].
#[derive(Clone, Default)]
pub struct Hasher {
    sha: Sha256,
    len: u64,
}

impl Hasher {
    pub fn new() -> Hasher {
        Hasher::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.sha.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> Digest {
        Digest {
            hash: self.sha.finalize().into(),
            size_bytes: self.len,
        }
    }
}

/// `io::copy(&mut reader, &mut hasher)` hashes a stream.
impl io::Write for Hasher {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A reader that hashes what is read through it, so a file can be sent (or copied) and
/// hashed in one pass.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::new(),
        }
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.hasher.len()
    }

    /// The digest of what has been read so far.
    pub fn digest(&self) -> Digest {
        self.hasher.clone().finish()
    }

    /// The reader and the digest of what was read through it.
    pub fn into_parts(self) -> (R, Digest) {
        (self.inner, self.hasher.finish())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.hasher.update(&buffer[..read]);
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad/3";

    #[test]
    fn known_vectors() {
        assert_eq!(Digest::of(b"abc").to_string(), ABC);
        assert_eq!(Digest::of(b""), Digest::EMPTY);
        assert!(Digest::EMPTY.is_empty());
        assert_eq!(
            Digest::EMPTY.to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/0"
        );
    }

    #[test]
    fn text_form_round_trips_and_is_strict() {
        let digest: Digest = ABC.parse().unwrap();
        assert_eq!(digest, Digest::of(b"abc"));
        assert_eq!(format!("{digest:?}"), format!("Digest({ABC})"));

        let hash = ABC.split_once('/').unwrap().0;
        for bad in [
            hash.to_owned(),
            format!("{}/3", hash.to_uppercase()),
            format!("{}/3", &hash[1..]),
            format!("{hash}0/3"),
            format!("{}g/3", &hash[1..]),
            format!("{hash}/"),
            format!("{hash}/+3"),
            format!("{hash}/-3"),
            format!("{hash}/3 "),
            format!("{hash}/18446744073709551616"),
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?} was accepted");
        }
        assert!(matches!(
            "x".parse::<Digest>(),
            Err(ParseDigestError::NoSeparator(_))
        ));
        assert!(matches!(
            format!("{hash}/x").parse::<Digest>(),
            Err(ParseDigestError::BadSize(_))
        ));
        assert!(matches!(
            "ab/1".parse::<Digest>(),
            Err(ParseDigestError::BadHash(_))
        ));
    }

    #[test]
    fn binary_form_round_trips() {
        let digest = Digest::of(b"some header");
        assert_eq!(Digest::from_bytes(&digest.to_bytes()).unwrap(), digest);
        assert_eq!(
            Digest::from_bytes(&[0; 39]),
            Err(ParseDigestError::BadLength(39))
        );
    }

    #[test]
    fn serde_uses_the_text_form() {
        let digest = Digest::of(b"abc");
        let json = serde_json::to_string(&digest).unwrap();
        assert_eq!(json, format!("\"{ABC}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), digest);
        assert!(serde_json::from_str::<Digest>("\"nope\"").is_err());
    }

    #[test]
    fn streaming_matches_one_shot() {
        // Larger than one chunk, and not a multiple of it.
        let data: Vec<u8> = (0..(3 * CHUNK + 17)).map(|i| (i * 7 % 251) as u8).collect();
        let expected = Digest::of(&data);
        assert_eq!(expected.size_bytes, data.len() as u64);

        assert_eq!(Digest::of_reader(&data[..]).unwrap(), expected);

        let mut hasher = Hasher::new();
        for piece in data.chunks(1000) {
            hasher.update(piece);
        }
        assert_eq!(hasher.len(), data.len() as u64);
        assert_eq!(hasher.finish(), expected);

        let mut hasher = Hasher::new();
        io::copy(&mut &data[..], &mut hasher).unwrap();
        assert_eq!(hasher.finish(), expected);

        let mut reader = HashingReader::new(&data[..]);
        let mut copy = Vec::new();
        reader.read_to_end(&mut copy).unwrap();
        assert_eq!(copy, data);
        assert_eq!(reader.bytes_read(), data.len() as u64);
        assert_eq!(reader.digest(), expected);
        assert_eq!(reader.into_parts().1, expected);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.h");
        std::fs::write(&path, &data).unwrap();
        assert_eq!(Digest::of_file(&path).unwrap(), expected);
    }
}
