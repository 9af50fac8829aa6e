//! A minimal binary encoding for the small control messages inside frames (hello,
//! wrapper ↔ daemon requests): big-endian integers and length-prefixed byte strings.
//!
//! Hand-rolled because the messages are few and flat, and the decoder must reject
//! hostile input without allocating what a length field claims.

/// Appends fields to a payload.
#[derive(Debug, Default)]
pub struct WireWriter {
    buf: Vec<u8>,
}

impl WireWriter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn u8(mut self, value: u8) -> Self {
        self.buf.push(value);
        self
    }

    pub fn u32(mut self, value: u32) -> Self {
        self.buf.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub fn u64(mut self, value: u64) -> Self {
        self.buf.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub fn bytes(mut self, value: &[u8]) -> Self {
        self.buf
            .extend_from_slice(&(value.len() as u32).to_be_bytes());
        self.buf.extend_from_slice(value);
        self
    }

    pub fn str(self, value: &str) -> Self {
        self.bytes(value.as_bytes())
    }

    pub fn strings(self, values: &[String]) -> Self {
        let mut writer = self.u32(values.len() as u32);
        for value in values {
            writer = writer.str(value);
        }
        writer
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// A malformed control message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed message: {0}")]
pub struct WireError(pub &'static str);

/// Reads fields back in the order they were written.
#[derive(Debug)]
pub struct WireReader<'a> {
    rest: &'a [u8],
}

impl<'a> WireReader<'a> {
    pub fn new(payload: &'a [u8]) -> Self {
        WireReader { rest: payload }
    }

    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.rest.len() < len {
            return Err(WireError(what));
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        Ok(head)
    }

    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1, "missing byte")?[0])
    }

    pub fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(
            self.take(4, "missing u32")?.try_into().expect("4 bytes"),
        ))
    }

    pub fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(
            self.take(8, "missing u64")?.try_into().expect("8 bytes"),
        ))
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.u32()? as usize;
        self.take(len, "byte string longer than the message")
    }

    pub fn string(&mut self) -> Result<String, WireError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| WireError("string is not UTF-8"))
    }

    pub fn strings(&mut self) -> Result<Vec<String>, WireError> {
        let count = self.u32()? as usize;
        // Each string needs at least its 4-byte length, which bounds a lying count.
        if count > self.rest.len() / 4 {
            return Err(WireError("string count longer than the message"));
        }
        (0..count).map(|_| self.string()).collect()
    }

    /// The unread remainder.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_short_input_is_an_error() {
        let payload = WireWriter::new()
            .u8(3)
            .u32(70000)
            .u64(u64::MAX)
            .str("héllo")
            .strings(&["a".into(), String::new()])
            .bytes(b"\0\x01")
            .finish();
        let mut reader = WireReader::new(&payload);
        assert_eq!(reader.u8().unwrap(), 3);
        assert_eq!(reader.u32().unwrap(), 70000);
        assert_eq!(reader.u64().unwrap(), u64::MAX);
        assert_eq!(reader.string().unwrap(), "héllo");
        assert_eq!(reader.strings().unwrap(), ["a", ""]);
        assert_eq!(reader.bytes().unwrap(), b"\0\x01");
        assert!(reader.rest().is_empty());
        assert!(reader.u8().is_err());
        let mut lying = WireReader::new(&[0xff, 0xff, 0xff, 0xff]);
        assert!(lying.strings().is_err());
        assert!(WireReader::new(&[0, 0, 0, 9, 1]).bytes().is_err());
    }
}
