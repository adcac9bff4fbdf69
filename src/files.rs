//! Writing files so that a crash leaves the whole old file or the whole new one: receipt files, mapping files.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;

/// Writes under a temporary name in the same folder (hidden, so no watcher takes it), syncs it, renames it
/// into place and syncs the folder.
pub fn write_atomically(target: &Path, write: impl FnOnce(&mut BufWriter<&File>) -> std::io::Result<()>) -> std::io::Result<()> {
    let invalid = |what| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{}: {what}", target.display()));
    let dir = target.parent().ok_or_else(|| invalid("no folder"))?;
    let name = target.file_name().and_then(|n| n.to_str()).ok_or_else(|| invalid("no file name"))?;
    let temporary = dir.join(format!(".{name}.tmp"));
    let file = File::create(&temporary)?;
    let mut out = BufWriter::with_capacity(1 << 20, &file);
    write(&mut out)?;
    out.flush()?;
    drop(out);
    file.sync_all()?;
    fs::rename(&temporary, target)?;
    sync_dir(dir)
}

/// Makes renames and removals in a folder durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A text file a person edits (configuration, sortiment), as UTF-8; text that is not names the line and column
/// of its first byte that is not, rather than only "not valid UTF-8".
pub fn read_text(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let before = std::str::from_utf8(&bytes[..valid]).expect("valid up to here");
        let (line, col) = crate::domain::line_and_column(before, valid);
        anyhow::anyhow!("{}:{line}:{col}: the file is not UTF-8 text (byte 0x{:02X}); save it as UTF-8", path.display(), bytes[valid])
    })
}

/// Deletes a file, where another process (or an earlier, stopped run) may have deleted it already: false then.
pub fn remove_if_there(path: &Path) -> std::io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Moves a file, where another process (or an earlier, stopped run) may have moved it already: false then.
pub fn move_if_there(from: &Path, to: &Path) -> std::io::Result<bool> {
    match fs::rename(from, to) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}
