//! Writing a connection's answers: [`Answer`] (what the response header needs, and the
//! handler's response) and [`write_answer`], the length, the response header and the
//! body's chunks in order, in-memory runs with vectored writes and file chunks with
//! `sendfile` where the writer reaches a plain socket ([`AnswerWriter::socket`]).

use std::io::{self, IoSlice};

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::Encodable;
use tokio::io::{AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use weir_broker::fetch::FileSlice;
use weir_broker::listener_kit::WriteHalf;

use crate::handler::{Chunk, HandlerError, Response};

/// An answer waiting for its turn: what the response header needs, and the response.
pub(super) struct Answer {
    pub(super) api_key: ApiKey,
    /// The version the response is encoded at (v0 for an ApiVersions request above the
    /// served range).
    pub(super) response_version: i16,
    pub(super) correlation_id: i32,
    /// The request frame's length, counted against
    /// [`MAX_IN_FLIGHT_REQUEST_BYTES_PER_CONNECTION`] until the answer is written.
    pub(super) request_bytes: usize,
    pub(super) result: Result<Response, HandlerError>,
    /// The request ran alone ([`Handler::pipelined`] false): reading resumes once this is
    /// answered.
    pub(super) alone: bool,
}

/// The [`Answer`] a started request's result becomes (one function, so every request the
/// handler starts is the same type of future in flight).
pub(super) fn answered(
    api_key: ApiKey,
    response_version: i16,
    correlation_id: i32,
    request_bytes: usize,
    alone: bool,
) -> impl FnOnce(Result<Response, HandlerError>) -> Answer {
    move |result| Answer {
        api_key,
        response_version,
        correlation_id,
        request_bytes,
        result,
        alone,
    }
}

pub(super) enum WriteError {
    Io(io::Error),
    Handler(HandlerError),
}

/// A connection's writing half, and the socket under it if `sendfile` can reach it.
pub(super) trait AnswerWriter: AsyncWrite + Unpin {
    /// The plain TCP socket this writes to; `None` where the bytes must pass through the
    /// writer (TLS encrypts them), so file chunks are read and written.
    fn socket(&self) -> Option<&TcpStream> {
        None
    }
}

impl AnswerWriter for OwnedWriteHalf {
    fn socket(&self) -> Option<&TcpStream> {
        Some(self.as_ref())
    }
}

impl AnswerWriter for WriteHalf {
    fn socket(&self) -> Option<&TcpStream> {
        WriteHalf::socket(self)
    }
}

/// Writes one answer: length, response header (its version from the api key and the
/// response version), then the body's chunks in order: runs of in-memory chunks in one
/// vectored write where the socket takes it, file chunks with `sendfile`.
pub(super) async fn write_answer<W: AnswerWriter>(
    writer: &mut W,
    answer: Answer,
) -> Result<(), WriteError> {
    let chunks = match answer.result {
        Ok(Response::Body(chunks)) => chunks,
        Ok(Response::Silent) => return Ok(()),
        Err(err) => return Err(WriteError::Handler(err)),
    };
    let header_version = answer
        .api_key
        .response_header_version(answer.response_version);
    let header = ResponseHeader::default().with_correlation_id(answer.correlation_id);
    let encode_error = |source: Box<dyn std::error::Error + Send + Sync>| {
        WriteError::Handler(HandlerError::Encode {
            version: answer.response_version,
            source,
        })
    };
    let header_bytes = header
        .compute_size(header_version)
        .map_err(|e| encode_error(e.into()))?;
    let body_bytes: usize = chunks.iter().map(Chunk::len).sum();
    let length = i32::try_from(header_bytes + body_bytes).map_err(|_| {
        encode_error(format!("a response of {body_bytes} bytes does not fit a frame").into())
    })?;
    let mut prefix = BytesMut::with_capacity(4 + header_bytes);
    prefix.put_i32(length);
    header
        .encode(&mut prefix, header_version)
        .map_err(|e| encode_error(e.into()))?;
    let mut rest = &chunks[..];
    let mut in_memory: Vec<IoSlice<'_>> = vec![IoSlice::new(&prefix)];
    loop {
        let run = rest
            .iter()
            .position(|chunk| matches!(chunk, Chunk::File(_)))
            .unwrap_or(rest.len());
        in_memory.extend(rest[..run].iter().filter_map(|chunk| match chunk {
            Chunk::Bytes(bytes) if !bytes.is_empty() => Some(IoSlice::new(bytes)),
            _ => None,
        }));
        write_all_vectored(writer, &mut in_memory)
            .await
            .map_err(WriteError::Io)?;
        in_memory.clear();
        let Some((Chunk::File(slice), after)) = rest[run..].split_first() else {
            return Ok(());
        };
        match writer.socket() {
            Some(socket) => send_file(socket, slice).await,
            None => match slice.read() {
                Ok(bytes) => writer.write_all(&bytes).await,
                Err(err) => Err(err),
            },
        }
        .map_err(WriteError::Io)?;
        rest = after;
    }
}

/// Sends `slice` from its file to `socket` with `sendfile`: the kernel hands the page
/// cache's pages to the socket, and the bytes never pass through the broker's memory.
async fn send_file(socket: &TcpStream, slice: &FileSlice) -> io::Result<()> {
    let mut position = slice.position();
    let end = position + slice.len() as u64;
    while position < end {
        socket.writable().await?;
        let left = usize::try_from(end - position).unwrap_or(usize::MAX);
        let sent = socket.try_io(Interest::WRITABLE, || {
            rustix::fs::sendfile(socket, slice.file(), Some(&mut position), left)
                .map_err(io::Error::from)
        });
        match sent {
            // The file ends before the slice: it was cut short under the fetch. The answer
            // cannot be finished, so the connection closes and the client fetches again.
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the segment file ended before the fetched batches did",
                ));
            }
            // `sendfile` moved `position` past what it sent.
            Ok(_) => {}
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

async fn write_all_vectored<W: AsyncWrite + Unpin>(
    writer: &mut W,
    mut slices: &mut [IoSlice<'_>],
) -> io::Result<()> {
    while !slices.is_empty() {
        let written = writer.write_vectored(slices).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, written);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tokio::net::TcpListener;

    use super::*;

    /// A writer that takes at most `step` bytes a call, from the first slice only.
    struct Trickle {
        written: Vec<u8>,
        step: usize,
    }

    impl AnswerWriter for Trickle {}

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.written.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn an_answer_is_length_header_and_chunks_however_the_socket_splits_it() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for step in [1, 3, 1000] {
            let mut writer = Trickle {
                written: Vec::new(),
                step,
            };
            let answer = Answer {
                api_key: ApiKey::Metadata,
                // Metadata v9 is flexible: response header v1, with its tagged fields.
                response_version: 9,
                correlation_id: 0x0102_0304,
                request_bytes: 0,
                alone: false,
                result: Ok(Response::Body(vec![
                    Chunk::Bytes(Bytes::from_static(b"ab")),
                    Chunk::Bytes(Bytes::new()),
                    Chunk::Bytes(Bytes::from_static(b"cde")),
                ])),
            };
            runtime
                .block_on(write_answer(&mut writer, answer))
                .unwrap_or_else(|_| panic!("step {step}"));
            assert_eq!(writer.written, b"\0\0\0\x0a\x01\x02\x03\x04\0abcde");
        }
    }

    fn with_file(slice: &FileSlice) -> Answer {
        Answer {
            api_key: ApiKey::Fetch,
            response_version: 4,
            correlation_id: 7,
            request_bytes: 0,
            alone: false,
            result: Ok(Response::Body(vec![
                Chunk::Bytes(Bytes::from_static(b"ab")),
                Chunk::File(slice.clone()),
                Chunk::Bytes(Bytes::from_static(b"cd")),
                Chunk::File(slice.clone()),
            ])),
        }
    }

    fn expected_with_file(slice: &FileSlice) -> Vec<u8> {
        let records = slice.read().unwrap();
        let length = 4 + 2 * (2 + records.len());
        let mut expected = (length as i32).to_be_bytes().to_vec();
        expected.extend_from_slice(&7i32.to_be_bytes());
        for tail in [b"ab", b"cd"] {
            expected.extend_from_slice(tail);
            expected.extend_from_slice(&records);
        }
        expected
    }

    #[test]
    fn file_chunks_are_sent_from_the_file_between_the_bytes_around_them() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (_log, slice) = crate::testing::file_slice(dir.path(), 60);
        assert!(slice.len() > 4 * 1024 * 1024, "larger than a socket buffer");
        let expected = expected_with_file(&slice);
        let received = runtime.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let client = TcpStream::connect(listener.local_addr().unwrap());
            let (client, accepted) = tokio::join!(client, listener.accept());
            let (mut client, (server, _)) = (client.unwrap(), accepted.unwrap());
            let (_reader, mut writer) = server.into_split();
            assert!(
                writer.socket().is_some(),
                "a plain socket sends with sendfile"
            );
            let reading = tokio::spawn(async move {
                let mut received = Vec::new();
                tokio::io::AsyncReadExt::read_to_end(&mut client, &mut received)
                    .await
                    .unwrap();
                received
            });
            assert!(write_answer(&mut writer, with_file(&slice)).await.is_ok());
            writer.shutdown().await.unwrap();
            reading.await.unwrap()
        });
        assert!(received == expected, "the answer's bytes differ");
    }

    #[test]
    fn a_writer_without_a_socket_reads_file_chunks_and_writes_them() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (_log, slice) = crate::testing::file_slice(dir.path(), 3);
        let mut writer = Trickle {
            written: Vec::new(),
            step: 100_000,
        };
        assert!(
            runtime
                .block_on(write_answer(&mut writer, with_file(&slice)))
                .is_ok()
        );
        assert!(writer.written == expected_with_file(&slice));
    }

    #[test]
    fn a_silent_answer_writes_nothing() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut writer = Trickle {
            written: Vec::new(),
            step: 10,
        };
        let answer = Answer {
            api_key: ApiKey::Produce,
            response_version: 9,
            correlation_id: 1,
            request_bytes: 0,
            alone: false,
            result: Ok(Response::Silent),
        };
        assert!(runtime.block_on(write_answer(&mut writer, answer)).is_ok());
        assert!(writer.written.is_empty());
    }
}
