//! distcc messages from a hostile peer: the same bytes as a request, as a response in
//! each plain version, as an sshcc job (request plus context) and as an LZO block.
//! Nothing may panic or allocate beyond the limits; whatever decodes must round-trip.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sshcc::protocol::Version;
use sshcc::protocol::lzo;

fuzz_target!(|data: &[u8]| {
    sshcc_fuzz::block_on(async {
        sshcc_fuzz::check_request(data).await;
        sshcc_fuzz::check_response(data, Version::V1).await;
        sshcc_fuzz::check_response(data, Version::V2).await;
        sshcc_fuzz::check_job(data).await;
    });
    let _ = lzo::decompress(data, 1 << 20);
    assert_eq!(
        lzo::decompress(&lzo::compress(data), data.len() as u64).as_deref(),
        Ok(data),
        "LZO round trip"
    );
});
