//! LZO1X bodies of distcc protocol versions 2 and 3.
//!
//! distcc sends each body as one raw LZO1X-1 block with no header and no uncompressed
//! length. We compress with the `lzo1x` crate (a safe port of LZO1X-1, so our output
//! matches miniLZO's) and decompress with the `lzo` crate, a `forbid(unsafe_code)` decoder
//! fuzzed against hostile input: the box decodes bytes sent by whoever holds a key.
//! See docs/design.md for the choice.

/// Compresses `data` as one LZO1X-1 block. Empty input stays empty: distcc sends an empty
/// body as length 0, never as the 3-byte end-of-stream marker.
pub fn compress(data: &[u8]) -> Vec<u8> {
    if data.is_empty() {
        return Vec::new();
    }
    // Level 3 is compress_1 with a 14-bit dictionary: miniLZO's lzo1x_1_compress.
    lzo1x::compress(data, lzo1x::CompressLevel::new(3))
}

/// Why a block did not decompress.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecompressError {
    #[error("data is corrupt ({0})")]
    Corrupt(String),
    #[error("decompressed size exceeds the limit of {0} bytes")]
    TooLarge(u64),
}

/// LZO1X cannot expand a block by more than this factor (a length-extension byte encodes
/// at most 255 more bytes of match), so a buffer beyond it means corrupt input.
const MAX_EXPANSION: usize = 256;

/// Decompresses one LZO1X block of unknown output size, up to `max_len` bytes.
///
/// Like distcc's `dcc_r_bulk_lzo1x` we start at 8× the input and double on overrun, but
/// never past what the input could legitimately expand to, so a few corrupt bytes cannot
/// trigger a large allocation.
pub fn decompress(block: &[u8], max_len: u64) -> Result<Vec<u8>, DecompressError> {
    if block.is_empty() {
        return Ok(Vec::new());
    }
    let ceiling = (block.len().saturating_mul(MAX_EXPANSION) + 4096)
        .min(usize::try_from(max_len).unwrap_or(usize::MAX));
    let mut capacity = block.len().saturating_mul(8).max(4096).min(ceiling);
    loop {
        let mut out = vec![0u8; capacity];
        match lzo::decompress_into(block, &mut out) {
            Ok(len) => {
                out.truncate(len);
                return Ok(out);
            }
            Err(lzo::Error::OutputOverrun) if capacity < ceiling => {
                capacity = capacity.saturating_mul(2).min(ceiling);
            }
            Err(lzo::Error::OutputOverrun) if ceiling as u64 == max_len => {
                return Err(DecompressError::TooLarge(max_len));
            }
            Err(err) => return Err(DecompressError::Corrupt(err.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors_from_distcc_reference() {
        assert_eq!(compress(b"int x;\n"), b"\x18int x;\n\x11\x00\x00");
        assert_eq!(compress(b"ab"), b"\x13ab\x11\x00\x00");
        assert_eq!(
            decompress(b"\x16hello\x11\x00\x00", 1 << 20).unwrap(),
            b"hello"
        );
        let repeated = b"#include <stdio.h>\n".repeat(3);
        let block = [
            0x00, 0x01, 0x23, 0x69, 0x6e, 0x63, 0x6c, 0x75, 0x64, 0x65, 0x20, 0x3c, 0x73, 0x74,
            0x64, 0x69, 0x6f, 0x2e, 0x68, 0x3e, 0x0a, 0x32, 0x48, 0x00, 0x0f, 0x69, 0x6e, 0x63,
            0x6c, 0x75, 0x64, 0x65, 0x20, 0x3c, 0x73, 0x74, 0x64, 0x69, 0x6f, 0x2e, 0x68, 0x3e,
            0x0a, 0x11, 0x00, 0x00,
        ];
        assert_eq!(decompress(&block, 1 << 20).unwrap(), repeated);
    }

    #[test]
    fn empty_is_empty_both_ways_and_marker_alone_decodes_to_nothing() {
        assert!(compress(b"").is_empty());
        assert!(decompress(b"", 10).unwrap().is_empty());
        assert!(decompress(b"\x11\x00\x00", 10).unwrap().is_empty());
    }

    #[test]
    fn round_trips_large_and_highly_compressible_data() {
        let zeros = vec![0u8; 5 << 20];
        assert_eq!(decompress(&compress(&zeros), 1 << 30).unwrap(), zeros);
        let mixed: Vec<u8> = (0..300_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        assert_eq!(decompress(&compress(&mixed), 1 << 30).unwrap(), mixed);
    }

    #[test]
    fn limits_and_corruption_are_errors() {
        let zeros = vec![0u8; 1 << 20];
        assert_eq!(
            decompress(&compress(&zeros), 1000),
            Err(DecompressError::TooLarge(1000))
        );
        assert!(matches!(
            decompress(b"\x18int", 1 << 20),
            Err(DecompressError::Corrupt(_))
        ));
        for seed in 0..200u32 {
            let junk: Vec<u8> = (0..64).map(|i| (seed * 31 + i * 17) as u8).collect();
            let _ = decompress(&junk, 1 << 20);
        }
    }
}
