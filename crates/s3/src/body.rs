//! A request body read as it streams into chunks, hashed on the way: MD5
//! for the ETag, and the checksums the client asked for, so a put is
//! verified without holding or re-reading it.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use futures::Stream;
use s3s::checksum::ChecksumHasher;
use s3s::crypto::{Checksum as _, Md5};
use s3s::dto::StreamingBlob;
use tokio::io::{AsyncRead, ReadBuf};

/// The hashes of everything a [`HashingBody`] handed out.
pub struct Hashes {
    pub md5: Md5,
    pub checksums: ChecksumHasher,
    pub size_bytes: u64,
}

impl Hashes {
    pub fn new(checksums: ChecksumHasher) -> Hashes {
        Hashes {
            md5: Md5::new(),
            checksums,
            size_bytes: 0,
        }
    }

    fn update(&mut self, data: &[u8]) {
        self.md5.update(data);
        self.checksums.update(data);
        self.size_bytes += data.len() as u64;
    }
}

/// Reads a body stream as an [`AsyncRead`], hashing what it yields, and
/// refusing more than `max_bytes`.
pub struct HashingBody<'a> {
    stream: &'a mut StreamingBlob,
    pending: Bytes,
    hashes: &'a mut Hashes,
    max_bytes: u64,
}

impl<'a> HashingBody<'a> {
    pub fn new(stream: &'a mut StreamingBlob, hashes: &'a mut Hashes, max_bytes: u64) -> Self {
        HashingBody {
            stream,
            pending: Bytes::new(),
            hashes,
            max_bytes,
        }
    }
}

impl AsyncRead for HashingBody<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        while this.pending.is_empty() {
            match Pin::new(&mut *this.stream).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Err(std::io::Error::other(format!(
                        "the request body broke off: {e}"
                    ))))
                }
                Poll::Ready(Some(Ok(data))) => {
                    this.hashes.update(&data);
                    if this.hashes.size_bytes > this.max_bytes {
                        return Poll::Ready(Err(std::io::Error::other(format!(
                            "the request body is larger than {} bytes, the most one request may send",
                            this.max_bytes
                        ))));
                    }
                    this.pending = data;
                }
            }
        }
        let n = this.pending.len().min(buf.remaining());
        buf.put_slice(&this.pending[..n]);
        this.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}
