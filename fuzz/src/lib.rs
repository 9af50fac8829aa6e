//! What the fuzz targets share: a tokio runtime per thread, an allocator that turns an
//! allocation beyond every sshcc limit into a crash, and the round-trip checks of the
//! distcc messages (used on raw bytes and on mux frame payloads alike).

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::io::Write;

use sshcc::protocol::Limits;
use sshcc::protocol::distcc::{
    Request, Response, Version, encode_request_as, encode_response, read_request, read_response,
};
use sshcc::protocol::job::{decode_job, encode_job};

/// More than any limit sshcc documents (1 GiB per distcc file or mux payload): no
/// allocation may exceed it, whatever a length field claims.
pub const MAX_ALLOCATION: usize = (1 << 30) + (1 << 20);

/// The system allocator, aborting on an allocation larger than [`MAX_ALLOCATION`].
/// Built without a sanitizer, libFuzzer cannot see allocation sizes itself
/// (`-malloc_limit_mb` needs one); an untouched huge reservation would not show up in
/// `-rss_limit_mb` either.
struct Guarded;

fn check_size(size: usize) {
    if size > MAX_ALLOCATION {
        // Nothing here allocates: stderr is unbuffered.
        let _ = std::io::stderr()
            .write_all(b"==sshcc-fuzz== allocation larger than any sshcc limit; aborting\n");
        std::process::abort();
    }
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds the contract.
unsafe impl GlobalAlloc for Guarded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check_size(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check_size(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check_size(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Guarded = Guarded;

/// Runs `future` on this thread's current-thread runtime (built once). The decoders
/// read from byte slices, which never wait, so no I/O or timer driver is needed.
pub fn block_on<F: Future>(future: F) -> F::Output {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime");
    }
    RUNTIME.with(|runtime| runtime.block_on(future))
}

/// `data` as a request: whatever decodes must re-encode, in either plain version, to
/// something that decodes to the same request; a version-1 request re-encodes to the
/// very bytes it was read from (up to the case of the hex digits).
pub async fn check_request(data: &[u8]) {
    let limits = Limits::default();
    let mut input = data;
    let Ok(request) = read_request(&mut input, &limits).await else {
        return;
    };
    let consumed = &data[..data.len() - input.len()];
    assert!(
        !request.argv.is_empty(),
        "a request without argv[0] decoded"
    );
    if request.version == Version::V1 {
        assert_eq!(
            encode_request_as(&request, Version::V1).to_ascii_lowercase(),
            consumed.to_ascii_lowercase(),
            "a version-1 request did not re-encode to its own bytes"
        );
    }
    for version in [Version::V1, Version::V2] {
        let bytes = encode_request_as(&request, version);
        let again = read_request(&mut &bytes[..], &limits)
            .await
            .unwrap_or_else(|err| panic!("re-encoded {version:?} request fails: {err}"));
        assert_eq!(
            again,
            Request {
                version,
                ..request.clone()
            },
            "request changed in a round trip through {version:?}"
        );
    }
}

/// `data` as a response in `version`: whatever decodes must survive a round trip (the
/// object travels only with status 0).
pub async fn check_response(data: &[u8], version: Version) {
    let limits = Limits::default();
    let Ok(response) = read_response(&mut &data[..], version, &limits).await else {
        return;
    };
    let bytes = encode_response(version, &response);
    let again = read_response(&mut &bytes[..], version, &limits)
        .await
        .unwrap_or_else(|err| panic!("re-encoded {version:?} response fails: {err}"));
    let expected = if response.status == 0 {
        response
    } else {
        Response {
            object: Vec::new(),
            ..response
        }
    };
    assert_eq!(again, expected, "response changed in a round trip");
}

/// `data` as a mux JOB payload (request plus sshcc's job context): whatever decodes must
/// decode again, unchanged, from what `encode_job` makes of it.
pub async fn check_job(data: &[u8]) {
    let limits = Limits::default();
    let Ok((request, context)) = decode_job(data, &limits).await else {
        return;
    };
    let bytes = encode_job(&request, &context);
    let (again, again_context) = decode_job(&bytes, &limits)
        .await
        .unwrap_or_else(|err| panic!("re-encoded job fails: {err}"));
    assert_eq!(
        again,
        Request {
            version: Version::V1,
            ..request
        },
        "job request changed in a round trip"
    );
    assert_eq!(
        again_context, context,
        "job context changed in a round trip"
    );
}
