//! A JSONL file read in blocks of whole lines, so ingest never holds the
//! file's bytes all at once: a block is parsed (in parallel) and dropped
//! before the next one is read, or while the next one is read: blocks own
//! their bytes, so one can be parsed while the next is filled, and a parsed
//! block's buffer is handed back to be filled again.
//!
//! Lines are numbered and cut as `bytes.split(b'\n')` over the whole file
//! would: 1-based, a UTF-8 byte order mark at the start removed, a trailing
//! `\r` stripped, blank (ASCII whitespace) lines left out but counted.

use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::path::Path;

use rayon::prelude::*;

use crate::DataError;

/// Bytes read per block (a block is longer when one line is).
pub const BLOCK_BYTES: usize = 8 << 20;

/// Whole lines of a file: their bytes, and the non-blank ones with their
/// 1-based numbers.
#[derive(Default)]
pub struct Block {
    bytes: Vec<u8>,
    lines: Vec<(u64, Range<usize>)>,
}

impl Block {
    /// Non-blank lines in the block.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The non-blank lines with their numbers, in order.
    pub fn lines(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.lines.iter().map(|(n, r)| (*n, &self.bytes[r.clone()]))
    }

    /// [`Block::lines`], for rayon.
    pub fn par_lines(&self) -> impl IndexedParallelIterator<Item = (u64, &[u8])> {
        self.lines
            .par_iter()
            .map(|(n, r)| (*n, &self.bytes[r.clone()]))
    }
}

/// The blocks of one file, in order.
pub struct LineBlocks {
    name: String,
    file: File,
    /// The partial last line of the block handed out last, which starts the next one.
    carry: Vec<u8>,
    /// Number of the first line of the next block.
    line: u64,
    /// Bytes of the file handed out so far (byte order mark included).
    consumed: u64,
    started: bool,
    eof: bool,
    block_bytes: usize,
}

impl LineBlocks {
    /// Open `full`; `name` is the file as the user gave it, for errors.
    pub fn open(name: &str, full: &Path) -> Result<Self, DataError> {
        let file = File::open(full).map_err(|source| DataError::Io {
            path: name.to_owned(),
            source,
        })?;
        Ok(Self::with_block_bytes(name, file, BLOCK_BYTES))
    }

    fn with_block_bytes(name: &str, file: File, block_bytes: usize) -> Self {
        Self {
            name: name.to_owned(),
            file,
            carry: Vec::new(),
            line: 1,
            consumed: 0,
            started: false,
            eof: false,
            block_bytes: block_bytes.max(1),
        }
    }

    /// The next block; `None` at the end of the file. `reuse` is a block
    /// done with, whose buffers are filled again instead of new ones.
    pub fn next_block(&mut self, reuse: Option<Block>) -> Result<Option<Block>, DataError> {
        let Block {
            mut bytes,
            mut lines,
        } = reuse.unwrap_or_default();
        bytes.clear();
        lines.clear();
        bytes.append(&mut self.carry);
        let mut want = self.block_bytes;
        let end = loop {
            // the first read sees the whole byte order mark, if there is one
            self.fill(&mut bytes, if self.started { want } else { want.max(3) })?;
            if !self.started && (bytes.len() >= 3 || self.eof) {
                if bytes.starts_with(b"\xEF\xBB\xBF") {
                    bytes.drain(..3);
                    self.consumed += 3;
                }
                self.started = true;
            }
            if self.eof {
                break bytes.len();
            }
            match memchr::memrchr(b'\n', &bytes) {
                Some(i) => break i + 1,
                // one line longer than a block: read on until it ends
                None => want = bytes.len() + self.block_bytes,
            }
        };
        if end == 0 && self.eof {
            return Ok(None);
        }
        self.carry.extend_from_slice(&bytes[end..]);
        bytes.truncate(end);
        self.consumed += end as u64;
        // A block that ends with a line break holds exactly the lines before
        // each break; the file's last block also holds what follows the last break.
        let body = if self.eof { end } else { end - 1 };
        // Cut as `body.split(|&b| b == b'\n')` would, with the breaks found by
        // memchr: a closure per byte was a tenth of ingest's time.
        let mut start = 0;
        let mut number = self.line;
        for stop in memchr::memchr_iter(b'\n', &bytes[..body]).chain([body]) {
            let line = &bytes[start..stop];
            let len = line.strip_suffix(b"\r").unwrap_or(line).len();
            if !bytes[start..start + len]
                .iter()
                .all(u8::is_ascii_whitespace)
            {
                lines.push((number, start..start + len));
            }
            start = stop + 1;
            number += 1;
        }
        self.line = number;
        Ok(Some(Block { bytes, lines }))
    }

    /// About how many lines the whole file has, given that the first block
    /// held `lines_so_far` (a little more, so a table sized by it rarely grows).
    pub fn estimated_lines(&self, lines_so_far: usize) -> usize {
        let file_bytes = self.file.metadata().map_or(0, |m| m.len());
        if self.eof || self.consumed == 0 {
            return lines_so_far;
        }
        let per_line = self.consumed as f64 / lines_so_far.max(1) as f64;
        let estimate = (file_bytes as f64 / per_line * 1.05) as usize + 16;
        // a first block of unusually short lines must not size a table for
        // far more rows than the file can hold
        estimate.min((file_bytes / 32) as usize + 16)
    }

    /// Read until `buf` holds `want` bytes or the file ends.
    fn fill(&mut self, buf: &mut Vec<u8>, want: usize) -> Result<(), DataError> {
        while !self.eof && buf.len() < want {
            let missing = (want - buf.len()) as u64;
            let got = (&mut self.file)
                .take(missing)
                .read_to_end(buf)
                .map_err(|source| DataError::Io {
                    path: self.name.clone(),
                    source,
                })?;
            if got == 0 {
                self.eof = true;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines as the whole-file split gives them.
    fn whole(bytes: &[u8]) -> Vec<(u64, Vec<u8>)> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        bytes
            .split(|&b| b == b'\n')
            .enumerate()
            .map(|(i, l)| (i as u64 + 1, l.strip_suffix(b"\r").unwrap_or(l)))
            .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
            .map(|(i, l)| (i, l.to_vec()))
            .collect()
    }

    fn blocked(bytes: &[u8], block_bytes: usize) -> Vec<(u64, Vec<u8>)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.jsonl");
        std::fs::write(&path, bytes).unwrap();
        let mut blocks =
            LineBlocks::with_block_bytes("f.jsonl", File::open(&path).unwrap(), block_bytes);
        let (mut out, mut spare) = (Vec::new(), None);
        while let Some(block) = blocks.next_block(spare.take()).unwrap() {
            out.extend(block.lines().map(|(i, l)| (i, l.to_vec())));
            // the buffers are used again, as ingest does
            spare = Some(block);
        }
        out
    }

    fn estimate_after_first_block(bytes: &[u8], block_bytes: usize) -> (usize, usize) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.jsonl");
        std::fs::write(&path, bytes).unwrap();
        let mut blocks =
            LineBlocks::with_block_bytes("f.jsonl", File::open(&path).unwrap(), block_bytes);
        let first = blocks.next_block(None).unwrap().map_or(0, |b| b.len());
        (first, blocks.estimated_lines(first))
    }

    #[test]
    fn the_line_estimate_is_exact_for_one_block_and_bounded_otherwise() {
        let line = b"{\"instruction\": \"a line of forty bytes or so\"}\n";
        let file: Vec<u8> = line.repeat(1000);
        assert_eq!(estimate_after_first_block(&file, 1 << 20), (1000, 1000));
        let (first, estimate) = estimate_after_first_block(&file, 4096);
        assert!(first < 1000);
        assert!((1000..1100).contains(&estimate), "{estimate}");
        // short lines first, then long ones: no more than the file can hold
        let mut skewed = b"{}\n".repeat(2000);
        skewed.extend(b"x".repeat(1 << 20));
        let (_, estimate) = estimate_after_first_block(&skewed, 4096);
        assert!(estimate <= skewed.len() / 32 + 16, "{estimate}");
    }

    #[test]
    fn blocks_cut_and_number_lines_as_the_whole_file_does() {
        let cases: [&[u8]; 9] = [
            b"",
            b"\n",
            b"a",
            b"a\n",
            b"\xEF\xBB\xBF{\"x\": 1}\r\n\r\n  \nb\n\nc",
            b"\xEF\xBB",
            "first\nsecond line that is longer than a block\n\u{4e2d}\u{6587}\r\nlast\n\n"
                .as_bytes(),
            b"\n\n\nx\n\n",
            b"one\ntwo\r\n\tthree\n",
        ];
        for bytes in cases {
            for block_bytes in [1, 2, 3, 5, 8, 64, 1 << 20] {
                assert_eq!(
                    blocked(bytes, block_bytes),
                    whole(bytes),
                    "{:?} in blocks of {block_bytes}",
                    String::from_utf8_lossy(bytes)
                );
            }
        }
    }
}
