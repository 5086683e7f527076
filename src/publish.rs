//! Published files, written the one way `run` and `merge-shards` both need: readable by the owner
//! only (0600), buffered, fsynced, with size and SHA-256 computed while the bytes go out (the
//! MANIFEST.json entries), so a file is never held whole in memory.

use crate::formats::hex;
use crate::formats::linkage::Written;
use crate::formats::writer::WriteError;
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

/// A writer that counts and hashes what passes through.
struct HashingWriter<W: Write> {
    inner: W,
    sha: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes one linkage file (0600, fsynced) through `write`; returns what was written, its size
/// and SHA-256 (hex).
pub(crate) fn write_linkage_file(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<Written, WriteError>,
) -> Result<(Written, u64, String)> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let f = o
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let mut hw = HashingWriter {
        inner: std::io::BufWriter::with_capacity(1 << 20, f),
        sha: Sha256::new(),
        bytes: 0,
    };
    let w = write(&mut hw).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    let HashingWriter { inner, sha, bytes } = hw;
    let f = inner
        .into_inner()
        .map_err(|e| anyhow::anyhow!("cannot write {}: {}", path.display(), e.error()))?;
    f.sync_all()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok((w, bytes, hex(&sha.finalize())))
}

/// Size and SHA-256 (hex) of a file, read in chunks.
pub(crate) fn file_digest(path: &Path) -> Result<(u64, String)> {
    let mut f = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut h = Sha256::new();
    let n = std::io::copy(&mut f, &mut h).with_context(|| format!("cannot read {}", path.display()))?;
    Ok((n, hex(&h.finalize())))
}

/// Fsyncs a folder (its entries: created and renamed files), best effort.
pub(crate) fn sync_dir(d: &Path) {
    if let Ok(f) = std::fs::File::open(d) {
        let _ = f.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_and_digest_are_those_of_the_bytes_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let (w, bytes, sha) = write_linkage_file(&path, |out| {
            out.write_all(b"H,x\r\n").map_err(WriteError::Io)?;
            Ok(Written {
                records: 1,
                ..Written::default()
            })
        })
        .unwrap();
        assert_eq!(w.records, 1);
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(bytes, on_disk.len() as u64);
        assert_eq!(sha, hex(&Sha256::digest(&on_disk)));
        assert_eq!(file_digest(&path).unwrap(), (bytes, sha));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
