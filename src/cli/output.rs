//! Output files: written to a temporary file, then renamed, so that a failed or interrupted run
//! leaves no half-written file.

use super::CliError;
use std::io::Write;
use std::path::Path;

/// An output file written as a run streams (a temporary file next to it until [`StreamFile::commit`]).
pub struct StreamFile {
    path: std::path::PathBuf,
    tmp: std::path::PathBuf,
}

impl StreamFile {
    /// Creates the temporary file (registered for removal on Ctrl-C) and returns its writer.
    pub fn create(path: &Path) -> Result<(StreamFile, std::io::BufWriter<std::fs::File>), CliError> {
        let err = |source| CliError::Write { path: path.display().to_string(), source };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let file = {
            let mut list = IN_PROGRESS.lock().map_err(|_| err(std::io::Error::other("poisoned lock")))?;
            list.push(tmp.clone());
            std::fs::File::create(&tmp).map_err(err)?
        };
        Ok((StreamFile { path: path.to_path_buf(), tmp }, std::io::BufWriter::with_capacity(1 << 20, file)))
    }

    /// The directory the file is written in (for spill files).
    pub fn dir(&self) -> std::path::PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        }
    }

    /// Flushes `w` and moves the file into place.
    pub fn commit(self, w: std::io::Result<std::io::BufWriter<std::fs::File>>) -> Result<(), CliError> {
        let result = w.and_then(|mut w| {
            w.flush()?;
            w.get_ref().sync_all()?;
            drop(w);
            std::fs::rename(&self.tmp, &self.path)
        });
        self.forget();
        result.map_err(|source| CliError::Write { path: self.path.display().to_string(), source })
    }

    fn forget(&self) {
        if let Ok(mut list) = IN_PROGRESS.lock() {
            list.retain(|p| p != &self.tmp);
        }
    }
}

impl Drop for StreamFile {
    /// A file never committed (an error on the way) is removed.
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.tmp);
        self.forget();
    }
}

/// Temporary files being written, removed if the user interrupts the run.
static IN_PROGRESS: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());

/// On Ctrl-C, removes any temporary output file and exits with code 130: an interrupted run
/// leaves no half-written file (finished files are complete: they are renamed into place).
pub fn clean_up_on_interrupt() {
    let _ = ctrlc::set_handler(|| {
        if let Ok(list) = IN_PROGRESS.lock() {
            for p in list.iter() {
                let _ = std::fs::remove_file(p);
            }
        }
        eprintln!("tessera: interrupted");
        std::process::exit(130);
    });
}

pub fn write_atomically(path: &Path, body: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<(), CliError> {
    let err = |source| CliError::Write { path: path.display().to_string(), source };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        // Registered before it exists: an interrupt in between finds nothing to remove, and one
        // after removes it (the handler holds the lock, so creation cannot race past it).
        let file = {
            let mut list = IN_PROGRESS.lock().map_err(|_| std::io::Error::other("poisoned lock"))?;
            list.push(tmp.clone());
            std::fs::File::create(&tmp)?
        };
        let mut w = std::io::BufWriter::new(file);
        body(&mut w)?;
        w.flush()?;
        w.get_ref().sync_all()?;
        drop(w);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    if let Ok(mut list) = IN_PROGRESS.lock() {
        list.retain(|p| p != &tmp);
    }
    result.map_err(err)
}
