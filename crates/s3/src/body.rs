//! A request body read as it streams into chunks, hashed on the way: MD5
//! for the ETag, and the checksums the client asked for, so a put is
//! verified without holding or re-reading it.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use futures::Stream;
use s3s::checksum::ChecksumHasher;
use s3s::crypto::{Checksum as _, Md5};
use s3s::dto::{ChecksumAlgorithm, StreamingBlob};
use s3s::{s3_error, S3Result};
use tokio::io::{AsyncRead, ReadBuf};

use crate::attrs::Checksums;
use crate::objects::hex;

/// What a request says its body hashes to: the checksums in its headers,
/// those it announced as trailers (`x-amz-trailer`, read once the body
/// ends), and its `Content-MD5`.
pub struct Expected {
    sent: Checksums,
    trailers: Option<s3s::TrailingHeaders>,
    content_md5: Option<String>,
}

/// A body that hashed as its request said.
pub struct Verified {
    /// MD5 hex: the ETag of a single put or of a part.
    pub etag: String,
    pub checksums: Checksums,
    pub size_bytes: u64,
}

impl Expected {
    /// What `headers` and `trailers` promise, and the hashes to compute
    /// while the body streams.
    pub fn new(
        headers: &axum::http::HeaderMap,
        trailers: Option<s3s::TrailingHeaders>,
        sent: Checksums,
        algorithm: Option<&ChecksumAlgorithm>,
        content_md5: Option<String>,
    ) -> S3Result<(Expected, Hashes)> {
        let trailer = headers.get("x-amz-trailer").and_then(|v| v.to_str().ok());
        let hasher = checksum_hasher(&sent, algorithm, trailer)?;
        let expected = Expected {
            sent,
            trailers,
            content_md5,
        };
        Ok((expected, Hashes::new(hasher)))
    }

    /// Checks what the body hashed to against every hash promised
    /// (`BadDigest` on a mismatch: the caller then stores nothing).
    pub fn check(self, hashes: Hashes) -> S3Result<Verified> {
        let md5: [u8; 16] = hashes.md5.finalize();
        let computed = Checksums::from_s3(&hashes.checksums.finalize());
        let sent = sent_checksums(self.sent, self.trailers.as_ref());
        verify(&md5, self.content_md5.as_deref(), &computed, &sent)?;
        Ok(Verified {
            etag: hex(&md5),
            checksums: computed,
            size_bytes: hashes.size_bytes,
        })
    }
}

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

/// A hasher for each checksum the client sent, named, or will send as a
/// trailer.
fn checksum_hasher(
    sent: &Checksums,
    algorithm: Option<&ChecksumAlgorithm>,
    trailer: Option<&str>,
) -> S3Result<ChecksumHasher> {
    let mut hasher = ChecksumHasher::default();
    let mut wanted = |name: &str| -> S3Result<()> {
        match name.to_ascii_uppercase().as_str() {
            "CRC32" => hasher.crc32 = Some(Default::default()),
            "CRC32C" => hasher.crc32c = Some(Default::default()),
            "CRC64NVME" => hasher.crc64nvme = Some(Default::default()),
            "SHA1" => hasher.sha1 = Some(Default::default()),
            "SHA256" => hasher.sha256 = Some(Default::default()),
            other => {
                return Err(s3_error!(
                InvalidArgument,
                "checksum algorithm {other:?} is not one of CRC32, CRC32C, CRC64NVME, SHA1, SHA256"
            ))
            }
        }
        Ok(())
    };
    for (name, value) in [
        ("CRC32", &sent.crc32),
        ("CRC32C", &sent.crc32c),
        ("CRC64NVME", &sent.crc64nvme),
        ("SHA1", &sent.sha1),
        ("SHA256", &sent.sha256),
    ] {
        if value.is_some() {
            wanted(name)?;
        }
    }
    if let Some(algorithm) = algorithm {
        wanted(algorithm.as_str())?;
    }
    if let Some(trailer) = trailer {
        for name in trailer.split(',') {
            if let Some(algorithm) = name.trim().strip_prefix("x-amz-checksum-") {
                wanted(algorithm)?;
            }
        }
    }
    Ok(hasher)
}

/// The checksums sent, with those that came as trailers.
fn sent_checksums(mut sent: Checksums, trailers: Option<&s3s::TrailingHeaders>) -> Checksums {
    let Some(trailers) = trailers.and_then(|t| t.take()) else {
        return sent;
    };
    let value = |name: &str| {
        trailers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    for (slot, name) in [
        (&mut sent.crc32, "x-amz-checksum-crc32"),
        (&mut sent.crc32c, "x-amz-checksum-crc32c"),
        (&mut sent.crc64nvme, "x-amz-checksum-crc64nvme"),
        (&mut sent.sha1, "x-amz-checksum-sha1"),
        (&mut sent.sha256, "x-amz-checksum-sha256"),
    ] {
        if let Some(v) = value(name) {
            *slot = Some(v);
        }
    }
    sent
}

/// Checks what was computed against what was sent: every checksum sent
/// must match.
fn verify(
    md5: &[u8; 16],
    content_md5: Option<&str>,
    computed: &Checksums,
    sent: &Checksums,
) -> S3Result<()> {
    if let Some(content_md5) = content_md5 {
        use base64::Engine as _;
        let expected = base64::engine::general_purpose::STANDARD
            .decode(content_md5.trim())
            .map_err(|_| s3_error!(InvalidDigest, "Content-MD5 {content_md5:?} is not base64"))?;
        if expected != md5 {
            return Err(s3_error!(
                BadDigest,
                "the Content-MD5 sent does not match the body received (MD5 {}); nothing was stored",
                hex(md5)
            ));
        }
    }
    for (name, sent, computed) in [
        ("CRC32", &sent.crc32, &computed.crc32),
        ("CRC32C", &sent.crc32c, &computed.crc32c),
        ("CRC64NVME", &sent.crc64nvme, &computed.crc64nvme),
        ("SHA1", &sent.sha1, &computed.sha1),
        ("SHA256", &sent.sha256, &computed.sha256),
    ] {
        if let Some(sent) = sent {
            if Some(sent) != computed.as_ref() {
                return Err(s3_error!(
                    BadDigest,
                    "the {name} checksum sent ({sent}) does not match the body received ({}); nothing was stored",
                    computed.as_deref().unwrap_or("not computed")
                ));
            }
        }
    }
    Ok(())
}
