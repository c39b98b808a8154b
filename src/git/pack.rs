//! Writing many new objects at once as one pack (v2) with its index (v2), instead of one loose
//! file per object: what makes a snapshot of a large cluster fast. Deltas are not searched.

use flate2::{Compress, Compression, FlushCompress, Status};
use gix::ObjectId;
use gix::objs::Kind;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Writing a pack failed; names the pack directory.
#[derive(Debug, thiserror::Error)]
#[error("writing a pack in {dir}: {detail}")]
pub struct PackError {
    pub dir: PathBuf,
    pub detail: String,
}

/// Collects objects into a temporary pack under `<repo>/objects/pack` and, on [`finish`],
/// writes its index and moves both into place, so readers see all objects or none.
///
/// [`finish`]: PackWriter::finish
pub struct PackWriter {
    dir: PathBuf,
    tmp_path: PathBuf,
    out: Option<BufWriter<File>>,
    offset: u64,
    entries: Vec<(ObjectId, u32, u64)>,
    /// One deflate stream, reset between objects (creating one per object costs an allocation
    /// of its whole state each time).
    deflate: Compress,
    scratch: Vec<u8>,
}

const HEADER_LEN: u64 = 12;

impl PackWriter {
    /// Starts a pack in the bare repository at `repo`.
    pub fn new(repo: &Path) -> Result<Self, PackError> {
        let dir = repo.join("objects").join("pack");
        let fail = |e: std::io::Error| PackError {
            dir: dir.clone(),
            detail: e.to_string(),
        };
        std::fs::create_dir_all(&dir).map_err(fail)?;
        let tmp_path = dir.join(format!("tmp_pack_gr_{}_{:x}", std::process::id(), unique()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp_path)
            .map_err(fail)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        // The object count is patched in when the pack is finished.
        out.write_all(b"PACK\0\0\0\x02\0\0\0\0").map_err(fail)?;
        Ok(Self {
            dir,
            tmp_path,
            out: Some(out),
            offset: HEADER_LEN,
            entries: Vec::new(),
            deflate: Compress::new(Compression::fast(), true),
            scratch: Vec::new(),
        })
    }

    fn fail(&self, e: impl std::fmt::Display) -> PackError {
        PackError {
            dir: self.dir.clone(),
            detail: e.to_string(),
        }
    }

    /// Number of objects written so far.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds an object whose id the caller computed; the caller skips objects it knows exist.
    pub fn add(&mut self, kind: Kind, id: ObjectId, data: &[u8]) -> Result<(), PackError> {
        self.scratch.clear();
        encode_entry_header(kind, data.len() as u64, &mut self.scratch);
        let mut entry = std::mem::take(&mut self.scratch);
        self.deflate.reset();
        // Deflate output is at most a little larger than its input.
        entry.reserve(data.len() + data.len() / 1000 + 64);
        loop {
            let consumed = self.deflate.total_in() as usize;
            let status = self
                .deflate
                .compress_vec(&data[consumed..], &mut entry, FlushCompress::Finish)
                .map_err(|e| self.fail(e))?;
            match status {
                Status::StreamEnd => break,
                Status::Ok | Status::BufError => entry.reserve(entry.capacity().max(1024)),
            }
        }
        let crc = crc32fast::hash(&entry);
        let out = self.out.as_mut().ok_or_else(|| PackError {
            dir: self.dir.clone(),
            detail: "pack already finished".into(),
        })?;
        out.write_all(&entry).map_err(|e| PackError {
            dir: self.dir.clone(),
            detail: e.to_string(),
        })?;
        self.entries.push((id, crc, self.offset));
        self.offset += entry.len() as u64;
        self.scratch = entry;
        Ok(())
    }

    /// Writes the trailer and the index and moves the pack into place. Returns the pack's
    /// checksum, or `None` (and leaves nothing behind) when no object was added.
    pub fn finish(mut self) -> Result<Option<ObjectId>, PackError> {
        if self.entries.is_empty() {
            let _ = std::fs::remove_file(&self.tmp_path);
            return Ok(None);
        }
        let count = u32::try_from(self.entries.len())
            .map_err(|_| self.fail("too many objects for one pack"))?;
        let out = self
            .out
            .take()
            .ok_or_else(|| self.fail("pack already finished"))?;
        let mut file = out.into_inner().map_err(|e| self.fail(e))?;
        let fail = |e: std::io::Error| PackError {
            dir: self.dir.clone(),
            detail: e.to_string(),
        };
        file.seek(SeekFrom::Start(8)).map_err(fail)?;
        file.write_all(&count.to_be_bytes()).map_err(fail)?;
        // The trailer is the SHA-1 of everything before it.
        file.seek(SeekFrom::Start(0)).map_err(fail)?;
        let mut hasher = gix::hash::hasher(gix::hash::Kind::Sha1);
        let mut reader = std::io::BufReader::with_capacity(1 << 20, &mut file);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = std::io::Read::read(&mut reader, &mut buf).map_err(fail)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        drop(reader);
        let checksum = hasher.try_finalize().map_err(|e| self.fail_with(e))?;
        file.seek(SeekFrom::End(0)).map_err(fail)?;
        file.write_all(checksum.as_bytes()).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        drop(file);

        let name = format!("pack-{}", checksum.to_hex());
        let pack_path = self.dir.join(format!("{name}.pack"));
        let idx_tmp = self
            .dir
            .join(format!("tmp_idx_gr_{}_{:x}", std::process::id(), unique()));
        write_index(&idx_tmp, &mut self.entries, checksum).map_err(fail)?;
        std::fs::rename(&self.tmp_path, &pack_path).map_err(fail)?;
        std::fs::rename(&idx_tmp, self.dir.join(format!("{name}.idx"))).map_err(fail)?;
        Ok(Some(checksum))
    }

    fn fail_with(&self, e: impl std::fmt::Display) -> PackError {
        self.fail(e)
    }
}

impl Drop for PackWriter {
    fn drop(&mut self) {
        // After `finish` the temporary file has been renamed; otherwise clean it up.
        let _ = std::fs::remove_file(&self.tmp_path);
    }
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// The pack entry header: type and size as a little-endian base-128 varint, 4 size bits first.
fn encode_entry_header(kind: Kind, size: u64, out: &mut Vec<u8>) {
    let type_bits: u8 = match kind {
        Kind::Commit => 1,
        Kind::Tree => 2,
        Kind::Blob => 3,
        Kind::Tag => 4,
    };
    let mut size = size;
    let mut byte = (type_bits << 4) | (size & 0x0f) as u8;
    size >>= 4;
    while size > 0 {
        out.push(byte | 0x80);
        byte = (size & 0x7f) as u8;
        size >>= 7;
    }
    out.push(byte);
}

/// Index v2: fan-out table, sorted ids, CRC-32s, offsets (large ones in a 64-bit table), the
/// pack checksum, and the index's own checksum.
fn write_index(
    path: &Path,
    entries: &mut [(ObjectId, u32, u64)],
    pack: ObjectId,
) -> std::io::Result<()> {
    entries.sort_unstable_by_key(|e| e.0);
    let mut out = Vec::with_capacity(8 + 1024 + entries.len() * 28 + 40);
    out.extend_from_slice(&[0xff, b't', b'O', b'c', 0, 0, 0, 2]);
    let mut fanout = [0u32; 256];
    for (id, _, _) in entries.iter() {
        fanout[id.as_bytes()[0] as usize] += 1;
    }
    let mut running = 0u32;
    for count in fanout {
        running += count;
        out.extend_from_slice(&running.to_be_bytes());
    }
    for (id, _, _) in entries.iter() {
        out.extend_from_slice(id.as_bytes());
    }
    for (_, crc, _) in entries.iter() {
        out.extend_from_slice(&crc.to_be_bytes());
    }
    let mut large = Vec::new();
    for (_, _, offset) in entries.iter() {
        if *offset < 0x8000_0000 {
            out.extend_from_slice(&(*offset as u32).to_be_bytes());
        } else {
            out.extend_from_slice(&(0x8000_0000u32 | large.len() as u32).to_be_bytes());
            large.push(*offset);
        }
    }
    for offset in large {
        out.extend_from_slice(&offset.to_be_bytes());
    }
    out.extend_from_slice(pack.as_bytes());
    let mut hasher = gix::hash::hasher(gix::hash::Kind::Sha1);
    hasher.update(&out);
    let own = hasher
        .try_finalize()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    out.extend_from_slice(own.as_bytes());
    let mut file = File::create(path)?;
    file.write_all(&out)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_are_read_by_git_and_by_gix() {
        let dir = std::env::temp_dir().join(format!("gr-pack-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let repo = gix::init_bare(&dir).unwrap();
        let mut pack = PackWriter::new(&dir).unwrap();
        let mut ids = Vec::new();
        for i in 0..300u32 {
            // Sizes around the varint boundaries (15, 16, 2047, 2048...).
            let data = vec![b'a' + (i % 26) as u8; (i as usize * 37) % 5000];
            let id = gix::objs::compute_hash(gix::hash::Kind::Sha1, Kind::Blob, &data).unwrap();
            pack.add(Kind::Blob, id, &data).unwrap();
            ids.push((id, data));
        }
        assert!(pack.finish().unwrap().is_some());
        let repo = gix::open(repo.path()).unwrap();
        for (id, data) in &ids {
            assert_eq!(&repo.find_blob(*id).unwrap().data, data);
        }
        let out = std::process::Command::new("git")
            .args(["--git-dir", dir.to_str().unwrap(), "fsck", "--strict"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // An empty pack leaves nothing behind.
        assert!(PackWriter::new(&dir).unwrap().finish().unwrap().is_none());
        let packs = std::fs::read_dir(dir.join("objects/pack")).unwrap().count();
        assert_eq!(packs, 2, "one .pack and one .idx");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn entry_headers() {
        let mut out = Vec::new();
        encode_entry_header(Kind::Blob, 15, &mut out);
        assert_eq!(out, [0x3f]);
        out.clear();
        encode_entry_header(Kind::Blob, 16, &mut out);
        assert_eq!(out, [0xb0, 0x01]);
        out.clear();
        encode_entry_header(Kind::Tree, 2048, &mut out);
        assert_eq!(out, [0xa0, 0x80, 0x01]);
    }
}
