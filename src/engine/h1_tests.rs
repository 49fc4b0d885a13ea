//! The hand-written HTTP/1.1 client against scripted servers. The pipe between them carries
//! at most 7 bytes at a time, so every head, chunk-size line and body arrives in pieces.

use super::*;
use http::HeaderValue;
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};

impl Stream for DuplexStream {}

const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: t\r\n\r\n";

/// A server that answers the i-th request (read up to its blank line) with `answers[i]`,
/// then closes the connection if `close` is set, or keeps it open until the test ends.
fn scripted(answers: Vec<Vec<u8>>, close: bool) -> H1Conn {
    let (client, mut server) = duplex(7);
    tokio::spawn(async move {
        let mut seen = Vec::new();
        for answer in answers {
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                let mut byte = [0u8; 64];
                match server.read(&mut byte).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => seen.extend_from_slice(&byte[..n]),
                }
            }
            seen.clear();
            if server.write_all(&answer).await.is_err() {
                return;
            }
        }
        if !close {
            std::future::pending::<()>().await;
        }
    });
    H1Conn::new(Box::new(client))
}

/// Sends one request to a server that answers `answer` (then hangs up if `close`).
async fn one(answer: &[u8], close: bool) -> (Result<u16, ErrorClass>, H1Conn) {
    let mut conn = scripted(vec![answer.to_vec()], close);
    let result = bounded(conn.send(GET, false, None)).await;
    (result, conn)
}

/// A broken parser may wait forever: every exchange here is given 5 s.
async fn bounded<F: std::future::Future>(fut: F) -> F::Output {
    tokio::time::timeout(std::time::Duration::from_secs(5), fut)
        .await
        .expect("the exchange finished within 5 s")
}

#[test]
fn the_wire_form_frames_the_body_itself() {
    let mut headers = HeaderMap::new();
    headers.insert(header::HOST, HeaderValue::from_static("example:8080"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
    let get = wire(&Method::GET, "/a?b=1", &headers, &Bytes::new());
    assert_eq!(
        &get[..],
        b"GET /a?b=1 HTTP/1.1\r\nhost: example:8080\r\n\r\n"
    );
    let post = wire(&Method::POST, "/", &headers, &Bytes::from_static(b"{}"));
    assert_eq!(
        &post[..],
        b"POST / HTTP/1.1\r\nhost: example:8080\r\ncontent-length: 2\r\n\r\n{}"
    );
    let empty_put = wire(&Method::PUT, "/", &HeaderMap::new(), &Bytes::new());
    assert_eq!(
        &empty_put[..],
        b"PUT / HTTP/1.1\r\ncontent-length: 0\r\n\r\n"
    );
}

#[tokio::test]
async fn keep_alive_responses_in_pieces_reuse_the_connection() {
    let answers = vec![
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
        b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n\
          4;ext=1\r\nabcd\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-trailer: 1\r\n\r\n"
            .to_vec(),
        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_vec(),
    ];
    let mut conn = scripted(answers, false);
    for expected in [200, 201, 404] {
        assert!(conn.is_open().await);
        assert_eq!(bounded(conn.send(GET, false, None)).await, Ok(expected));
    }
    assert!(conn.is_open().await, "nothing asked to close it");
}

#[tokio::test]
async fn a_flow_keeps_the_headers_and_the_body_in_pieces() {
    let answers = vec![
        b"HTTP/1.1 200 OK\r\nX-Token: t-1\r\nContent-Length: 12\r\n\r\n{\"id\":\"a-7\"}".to_vec(),
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
          4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n"
            .to_vec(),
        b"HTTP/1.1 200 OK\r\n\r\nuntil the close".to_vec(),
    ];
    let mut conn = scripted(answers, true);
    let mut kept = Kept::default();
    assert_eq!(
        bounded(conn.send(GET, false, Some(&mut kept))).await,
        Ok(200)
    );
    assert_eq!(kept.headers[0], ("X-Token".to_string(), "t-1".to_string()));
    assert_eq!(kept.body, b"{\"id\":\"a-7\"}");
    assert_eq!(
        bounded(conn.send(GET, false, Some(&mut kept))).await,
        Ok(200)
    );
    assert_eq!(
        kept.body, b"abcdefg",
        "each response's own body, the chunks joined"
    );
    assert_eq!(
        bounded(conn.send(GET, false, Some(&mut kept))).await,
        Ok(200)
    );
    assert_eq!(kept.body, b"until the close");
}

#[tokio::test]
async fn bodiless_answers_and_interim_responses() {
    let answers = vec![
        // HEAD: a Content-Length, but no body follows.
        b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n".to_vec(),
        b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
        b"HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\n\r\n".to_vec(),
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
    ];
    let mut conn = scripted(answers, false);
    let head = b"HEAD / HTTP/1.1\r\n\r\n";
    assert_eq!(bounded(conn.send(head, true, None)).await, Ok(200));
    for expected in [204, 304, 200] {
        assert!(conn.is_open().await);
        assert_eq!(bounded(conn.send(GET, false, None)).await, Ok(expected));
    }
    assert!(conn.is_open().await);
}

#[tokio::test]
async fn the_server_ending_the_connection_is_honoured() {
    let (result, mut conn) = one(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\ncontent-length: 2\r\n\r\nok",
        false,
    )
    .await;
    assert_eq!(result, Ok(200));
    assert!(!conn.is_open().await, "Connection: close");

    let (result, mut conn) = one(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok", false).await;
    assert_eq!(result, Ok(200));
    assert!(!conn.is_open().await, "HTTP/1.0 without keep-alive");

    let keep = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\ncontent-length: 2\r\n\r\nok";
    let (result, mut conn) = one(keep, false).await;
    assert_eq!(result, Ok(200));
    assert!(conn.is_open().await, "HTTP/1.0 asking for keep-alive");

    let (result, mut conn) = one(b"HTTP/1.1 200 OK\r\n\r\nthe body runs to the end", true).await;
    assert_eq!(result, Ok(200));
    assert!(!conn.is_open().await, "a body delimited by the close");

    // Closed while idle after a keep-alive answer.
    let (result, mut conn) = one(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", true).await;
    assert_eq!(result, Ok(200));
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert!(!conn.is_open().await, "the server hung up while idle");
}

#[tokio::test]
async fn broken_answers_are_classified() {
    let cases: [(&[u8], ErrorClass); 7] = [
        (
            b"SSH-2.0-OpenSSH_9.0 this is not http\r\n\r\n",
            ErrorClass::Protocol,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789",
            ErrorClass::BodyRead,
        ),
        (b"", ErrorClass::ConnectionReset),
        (
            b"HTTP/1.1 200 OK\r\nContent-Le",
            ErrorClass::ConnectionReset,
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab",
            ErrorClass::Protocol,
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            ErrorClass::Protocol,
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            ErrorClass::BodyRead,
        ),
    ];
    for (answer, class) in cases {
        let (result, _) = one(answer, true).await;
        assert_eq!(result, Err(class), "{:?}", String::from_utf8_lossy(answer));
    }
}

#[tokio::test]
async fn a_head_longer_than_the_limit_is_a_protocol_error() {
    let mut answer = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
    answer.extend(std::iter::repeat_n(b'a', MAX_HEAD + 10));
    answer.extend_from_slice(b"\r\n\r\n");
    let (result, conn) = one(&answer, true).await;
    assert_eq!(result, Err(ErrorClass::Protocol));
    assert_eq!(
        conn.buf.len(),
        MAX_HEAD,
        "the buffer grew to the limit, not past it"
    );
}

#[tokio::test]
async fn a_long_head_within_the_limit_grows_the_buffer() {
    let mut answer = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
    answer.extend(std::iter::repeat_n(b'a', 20_000));
    answer.extend_from_slice(b"\r\ncontent-length: 3\r\n\r\nabc");
    let (result, _) = one(&answer, true).await;
    assert_eq!(result, Ok(200));
}
