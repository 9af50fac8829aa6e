//! The mux client against a scripted box on an in-memory stream: traffic counted and
//! the observer told, and a box that never greets.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::multiplexer::FRAME_HEADER;
use super::*;
use crate::protocol::mux::frame::{self, Compression, Frame};
use crate::protocol::mux::{Hello, kind};

#[tokio::test]
async fn traffic_is_counted_and_the_observer_hears_the_job_go_and_come_back() {
    let (client_end, box_end) = tokio::io::duplex(1 << 20);
    let (mut box_reader, mut box_writer) = tokio::io::split(box_end);
    let hello = Hello {
        protocol: 2,
        version: "test".into(),
        hostname: "box".into(),
        no_remote_preprocessing: Some("old".into()),
    };
    frame::write_frame(
        &mut box_writer,
        &Frame::new(kind::HELLO, 0, hello.encode()),
        Compression::None,
    )
    .await
    .unwrap();
    let traffic = Arc::new(Traffic::default());
    let (reader, writer) = tokio::io::split(client_end);
    let client =
        MuxClient::handshake_counted(reader, writer, Duration::from_secs(5), traffic.clone())
            .await
            .unwrap();
    assert_eq!(traffic.counts().compression_ratio(), None, "no job yet");
    let hello_len = traffic.counts().wire_received;
    assert!(hello_len > FRAME_HEADER);

    let events = Arc::new(Mutex::new(Vec::new()));
    let observer: Observer = {
        let events = events.clone();
        Arc::new(move |event| events.lock().unwrap().push(event))
    };
    let source = b"int x;\n".repeat(1000);
    let job = client.run_observed(source.clone(), Some(observer));
    let serve = async {
        let request = frame::read_frame(&mut box_reader).await.unwrap().unwrap();
        assert_eq!(request.payload, source);
        frame::write_frame(
            &mut box_writer,
            &Frame::new(kind::RESULT, request.job, vec![7; 2000]),
            Compression::Zstd,
        )
        .await
        .unwrap();
    };
    let (answer, ()) = tokio::join!(job, serve);
    assert_eq!(answer.unwrap(), vec![7; 2000]);
    assert_eq!(
        *events.lock().unwrap(),
        [JobEvent::Sent, JobEvent::Answering]
    );
    let counts = traffic.counts();
    assert_eq!(counts.jobs_sent, 1);
    assert_eq!(counts.payload_sent, FRAME_HEADER + source.len() as u64);
    assert_eq!(
        counts.payload_received,
        hello_len + FRAME_HEADER + 2000,
        "the hello travelled uncompressed"
    );
    assert!(counts.wire_sent < source.len() as u64 / 4, "{counts:?}");
    assert!(counts.wire_received < counts.payload_received, "{counts:?}");
    assert!(counts.compression_ratio().unwrap() > 4.0, "{counts:?}");
    assert_eq!(
        traffic.take_unbooked(),
        (counts.wire_sent, counts.wire_received)
    );
    assert_eq!(traffic.take_unbooked(), (0, 0));
}

#[tokio::test]
async fn a_box_that_does_not_greet_is_reported() {
    let (client_end, mut box_end) = tokio::io::duplex(1024);
    tokio::io::AsyncWriteExt::write_all(&mut box_end, b"Welcome to the box!\n")
        .await
        .unwrap();
    let (reader, writer) = tokio::io::split(client_end);
    let err = MuxClient::handshake(reader, writer, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(err, MuxError::NoGreeting(_)), "{err}");

    let (client_end, box_end) = tokio::io::duplex(1024);
    drop(box_end);
    let (reader, writer) = tokio::io::split(client_end);
    let err = MuxClient::handshake(reader, writer, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(err, MuxError::NoGreeting(_)), "{err}");
}
