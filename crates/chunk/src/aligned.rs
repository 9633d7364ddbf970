//! A byte buffer whose start is aligned for `O_DIRECT`: a chunk's body
//! arrives in one, so the store writes it to disk as it is; the store's
//! bounce buffer (for data that arrives elsewhere) is one, and a large
//! chunk is read from disk into one.
//!
//! Why: a chunk PUT used to gather its body into a `Vec` and then copy it
//! again into an aligned buffer (zeroed first) for the direct write. Those
//! copies were a fifth of a chunk server's CPU during a 1 GiB put
//! (`perf`, `__memmove` 21.6% and `__memset` 2.4%).

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;

/// The alignment `O_DIRECT` asks of buffers, lengths and offsets (enough
/// for devices of 512- and 4096-byte blocks).
pub const DIRECT_ALIGN: usize = 4096;

/// A fixed-capacity byte buffer whose contents start on a [`DIRECT_ALIGN`]
/// boundary: a `Vec` with room for the contents and one alignment more,
/// the contents starting at its first aligned address.
///
/// A plain `Vec` rather than an aligned allocation: the allocator serves
/// chunk-sized `Vec`s from memory it reuses, where an aligned allocation
/// of megabytes got fresh pages from the kernel every time, and faulting
/// them in cost more than the copy this buffer saves (`perf`: a chunk
/// server's CPU per 1 GiB put rose from 1.9 s to 2.9 s).
pub struct AlignedBuffer {
    /// `offset` bytes of padding, then the contents; never reallocated
    /// (which would move the contents off the boundary).
    storage: Vec<u8>,
    offset: usize,
    capacity_bytes: usize,
}

impl AlignedBuffer {
    /// An empty buffer with room for `capacity_bytes`.
    pub fn with_capacity(capacity_bytes: usize) -> AlignedBuffer {
        let mut storage: Vec<u8> = Vec::with_capacity(capacity_bytes + DIRECT_ALIGN);
        let offset = storage.as_ptr().align_offset(DIRECT_ALIGN);
        assert!(
            offset < DIRECT_ALIGN,
            "a byte pointer can always be aligned"
        );
        storage.resize(offset, 0);
        AlignedBuffer {
            storage,
            offset,
            capacity_bytes,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity_bytes
    }

    pub fn len(&self) -> usize {
        self.storage.len() - self.offset
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `bytes`; `false` (and nothing appended) if they do not fit.
    #[must_use]
    pub fn extend_from_slice(&mut self, bytes: &[u8]) -> bool {
        if bytes.len() > self.capacity_bytes - self.len() {
            return false;
        }
        let start = self.storage.as_ptr();
        self.storage.extend_from_slice(bytes);
        assert_eq!(start, self.storage.as_ptr(), "the buffer never moves");
        true
    }

    /// Empties the buffer, keeping its room (and its alignment).
    pub fn clear(&mut self) {
        self.storage.truncate(self.offset);
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.storage[self.offset..]
    }

    /// Reads from `file` into the room left until the buffer is full or
    /// the file ends; returns the bytes read. For a file opened with
    /// `O_DIRECT`, the buffer must be empty and its capacity a multiple of
    /// [`DIRECT_ALIGN`]: then every read starts on a boundary, and only
    /// the last, at the end of the file, comes back short.
    pub fn read_from(&mut self, file: &File) -> io::Result<usize> {
        let start = self.storage.as_ptr();
        let filled_before = self.len();
        while self.len() < self.capacity_bytes {
            let room = self.capacity_bytes - self.len();
            // Read into the room without zeroing it first: zeroing was a
            // sixth of a chunk server's CPU serving a large GET (`perf`).
            let spare = &mut self.storage.spare_capacity_mut()[..room];
            // SAFETY: read(2) writes at most `room` bytes into `spare`,
            // which the Vec owns and which is at least that long.
            let read = unsafe { libc::read(file.as_raw_fd(), spare.as_mut_ptr().cast(), room) };
            match read {
                0 => break,
                n if n > 0 => {
                    let n = n as usize;
                    assert!(n <= room, "read(2) wrote within the room it was given");
                    // SAFETY: the kernel initialised these `n` bytes, which
                    // lie within the Vec's capacity.
                    unsafe { self.storage.set_len(self.storage.len() + n) };
                }
                _ => {
                    let error = io::Error::last_os_error();
                    if error.kind() != io::ErrorKind::Interrupted {
                        return Err(error);
                    }
                }
            }
        }
        assert_eq!(start, self.storage.as_ptr(), "the buffer never moves");
        Ok(self.len() - filled_before)
    }
}

/// So that a buffer read from disk becomes a response body without a copy
/// (`Bytes::from_owner`).
impl AsRef<[u8]> for AlignedBuffer {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn contents_start_aligned_when_empty_and_when_full() {
        for capacity in [0, 1, DIRECT_ALIGN - 1, DIRECT_ALIGN, 5 << 20] {
            let mut buffer = AlignedBuffer::with_capacity(capacity);
            assert!((buffer.as_slice().as_ptr() as usize).is_multiple_of(DIRECT_ALIGN));
            assert!(buffer.is_empty());
            assert!(buffer.extend_from_slice(&vec![9; capacity]));
            assert!((buffer.as_slice().as_ptr() as usize).is_multiple_of(DIRECT_ALIGN));
            assert_eq!((buffer.len(), buffer.capacity()), (capacity, capacity));
            assert!(!buffer.extend_from_slice(&[1]), "full");
            buffer.clear();
            assert!(buffer.is_empty());
            assert!(buffer.extend_from_slice(&vec![8; capacity]), "room again");
            assert!((buffer.as_slice().as_ptr() as usize).is_multiple_of(DIRECT_ALIGN));
        }
    }

    #[test]
    fn reads_a_file_until_full_or_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        let data: Vec<u8> = (0..3 * DIRECT_ALIGN + 5).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        // (capacity, bytes already held): the file's end comes first, the
        // buffer's end comes first, and a buffer that is already full.
        for (capacity, held) in [(4 * DIRECT_ALIGN, 0), (2 * DIRECT_ALIGN, 7), (9, 9)] {
            let mut buffer = AlignedBuffer::with_capacity(capacity);
            assert!(buffer.extend_from_slice(&vec![1; held]));
            let file = File::open(&path).unwrap();
            let read = buffer.read_from(&file).unwrap();
            let expected_read = data.len().min(capacity - held);
            assert_eq!(read, expected_read, "capacity {capacity}, {held} held");
            let mut expected = vec![1; held];
            expected.extend_from_slice(&data[..expected_read]);
            assert_eq!(buffer.as_slice(), &expected[..]);
            assert!((buffer.as_slice().as_ptr() as usize).is_multiple_of(DIRECT_ALIGN));
        }
    }

    proptest! {
        /// Whatever the pieces, the buffer holds exactly what was appended
        /// until a piece does not fit, which is refused whole.
        #[test]
        fn holds_what_was_appended(
            capacity in 0usize..3 * DIRECT_ALIGN,
            pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..2000), 0..12),
        ) {
            let mut buffer = AlignedBuffer::with_capacity(capacity);
            let mut expected = Vec::new();
            for piece in &pieces {
                let fits = expected.len() + piece.len() <= buffer.capacity();
                prop_assert_eq!(buffer.extend_from_slice(piece), fits);
                if fits {
                    expected.extend_from_slice(piece);
                }
                prop_assert_eq!(buffer.as_slice(), &expected[..]);
            }
        }
    }
}
