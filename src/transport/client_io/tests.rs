//! `ClientIo` over a real TCP loopback pair: order, bounds, and a peer that stops reading.

use super::*;
use crate::wire::FrameBuilder;
use std::net::TcpListener;
use std::time::Duration;

/// (our side in a `ClientIo`, non-blocking; the peer, blocking with a read timeout)
fn pair() -> (ClientIo, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (ours, _) = listener.accept().unwrap();
    ours.set_nonblocking(true).unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    (ClientIo::new(ours, None), peer)
}

fn frame(builder: &mut FrameBuilder, ts: u64, len: usize) -> Rc<WireFrame> {
    builder
        .build::<()>(ts, 0, |b| {
            b.extend(std::iter::repeat_n(ts as u8, len));
            Ok(())
        })
        .unwrap()
}

fn read_exactly(peer: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    peer.read_exact(&mut buf).unwrap();
    buf
}

#[test]
fn control_and_audio_leave_in_queue_order() {
    let (mut io, mut peer) = pair();
    let mut b = FrameBuilder::default();
    let f1 = frame(&mut b, 1, 10);
    let f2 = frame(&mut b, 2, 10);
    io.enqueue_control(b"HTTP/1.1 101\r\n\r\n".to_vec());
    io.enqueue_audio(&f1, 8);
    // tungstenite writes its control frames through `Write`.
    io.write_all(b"PONG").unwrap();
    io.enqueue_audio(&f2, 8);
    let mut sent = 0;
    assert!(matches!(io.flush_queue(&mut sent), Ok(Flush::Done)));
    let mut expected = b"HTTP/1.1 101\r\n\r\n".to_vec();
    expected.extend_from_slice(f1.bytes());
    expected.extend_from_slice(b"PONG");
    expected.extend_from_slice(f2.bytes());
    assert_eq!(sent, expected.len() as u64);
    assert_eq!(read_exactly(&mut peer, expected.len()), expected);
    assert_eq!((io.audio_frames, io.control_bytes), (0, 0));
}

#[test]
fn the_queue_is_bounded_by_dropping_the_oldest_audio_never_control() {
    let (mut io, mut peer) = pair();
    let mut b = FrameBuilder::default();
    let frames: Vec<_> = (1..=5).map(|ts| frame(&mut b, ts, 10)).collect();
    io.enqueue_audio(&frames[0], 3);
    io.enqueue_control(b"CTRL".to_vec());
    let mut dropped = 0;
    for f in &frames[1..] {
        dropped += io.enqueue_audio(f, 3);
    }
    assert_eq!(dropped, 2, "five frames into room for three");
    assert_eq!(io.audio_frames, 3);
    let mut sent = 0;
    assert!(matches!(io.flush_queue(&mut sent), Ok(Flush::Done)));
    let mut expected = b"CTRL".to_vec();
    for f in &frames[2..] {
        expected.extend_from_slice(f.bytes());
    }
    assert_eq!(read_exactly(&mut peer, expected.len()), expected);
}

#[test]
fn a_peer_that_stops_reading_blocks_us_without_losing_a_begun_frame() {
    let (mut io, mut peer) = pair();
    set_sndbuf(&io.sock, 16 * 1024);
    let mut b = FrameBuilder::default();
    let mut sent = 0;
    let mut queued = Vec::new();
    // Fill the socket until it refuses (WouldBlock): the flush reports Blocked.
    let mut blocked = false;
    for ts in 0..2000 {
        let f = frame(&mut b, ts, 4000);
        io.enqueue_audio(&f, 4);
        queued.push(f);
        match io.flush_queue(&mut sent).unwrap() {
            Flush::Done => {}
            Flush::Blocked => {
                blocked = true;
                break;
            }
        }
    }
    assert!(blocked, "the socket never filled up");
    assert!(io.audio_frames >= 1);
    // More audio while blocked: bounded at 4 frames, the begun one kept.
    let begun = io.offset > 0;
    for ts in 5000..5010 {
        let f = frame(&mut b, ts, 4000);
        io.enqueue_audio(&f, 4);
        queued.push(f);
    }
    assert_eq!(io.audio_frames, 4);
    io.drop_pending_audio();
    assert_eq!(io.audio_frames, usize::from(begun));
    // The peer reads again: everything on the wire is whole frames, in order.
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = peer.read_to_end(&mut all);
        all
    });
    loop {
        match io.flush_queue(&mut sent).unwrap() {
            Flush::Done => break,
            Flush::Blocked => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    drop(io);
    let all = reader.join().unwrap();
    assert_eq!(all.len() as u64, sent);
    let mut rest = &all[..];
    let mut last_ts = None;
    while !rest.is_empty() {
        // 4 bytes of WebSocket header (126 + u16 length), then ts and codec byte.
        assert_eq!(&rest[..2], &[0x82, 126]);
        let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        let ts = u64::from_be_bytes(rest[4..12].try_into().unwrap());
        assert!(last_ts.is_none_or(|l| ts > l), "frames in order");
        assert!(
            rest[13..4 + len].iter().all(|&x| x == ts as u8),
            "frame {ts} whole"
        );
        last_ts = Some(ts);
        rest = &rest[4 + len..];
    }
}

#[test]
fn reads_pass_through_without_tls() {
    let (mut io, mut peer) = pair();
    peer.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut buf = [0u8; 64];
    let n = loop {
        match io.read(&mut buf) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\n\r\n");
}

#[test]
fn a_frame_sent_directly_keeps_its_place_and_its_rest_waits_whole() {
    // Direct sends (nothing queued) and queued ones interleave in order; when the socket
    // takes only part of a direct frame, the rest is queued as begun and sent whole.
    let (mut io, mut peer) = pair();
    set_sndbuf(&io.sock, 16 * 1024);
    let mut b = FrameBuilder::default();
    let mut sent = 0;
    let now = Instant::now();
    let f = frame(&mut b, 1, 10);
    let (dropped, r) = io.send_audio(&f, 4, now, &mut sent);
    assert!(matches!(r, Ok(Flush::Done)) && dropped == 0);
    assert_eq!(io.audio_frames, 0, "nothing queued for a direct send");
    io.enqueue_control(b"PONG".to_vec());
    let g = frame(&mut b, 2, 10);
    let (_, r) = io.send_audio(&g, 4, now, &mut sent);
    assert!(
        matches!(r, Ok(Flush::Done)),
        "behind the control bytes, flushed"
    );
    let mut expected = f.bytes().to_vec();
    expected.extend_from_slice(b"PONG");
    expected.extend_from_slice(g.bytes());
    assert_eq!(read_exactly(&mut peer, expected.len()), expected);
    // Fill the socket with direct sends until one is refused or cut.
    let mut ts = 10;
    loop {
        let f = frame(&mut b, ts, 4000);
        ts += 1;
        match io.send_audio(&f, 4, now, &mut sent).1.unwrap() {
            Flush::Done => assert_eq!(io.audio_frames, 0),
            Flush::Blocked => break,
        }
        assert!(ts < 5000, "the socket never filled up");
    }
    assert_eq!(io.audio_frames, 1, "the refused or cut frame waits");
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = peer.read_to_end(&mut all);
        all
    });
    loop {
        match io.flush_queue(&mut sent).unwrap() {
            Flush::Done => break,
            Flush::Blocked => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    drop(io);
    let all = reader.join().unwrap();
    assert_eq!(all.len() as u64 + expected.len() as u64, sent);
    let mut rest = &all[..];
    let mut want = 10;
    while !rest.is_empty() {
        assert_eq!(&rest[..2], &[0x82, 126]);
        let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        let ts = u64::from_be_bytes(rest[4..12].try_into().unwrap());
        assert_eq!(ts, want, "every frame, in order");
        assert!(rest[13..4 + len].iter().all(|&x| x == ts as u8));
        want += 1;
        rest = &rest[4 + len..];
    }
    assert_eq!(want, ts, "the last frame arrived whole");
}
