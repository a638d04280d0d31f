//! The passthrough file system: inode numbers of its own mapped to paths under the
//! backing directory, open files as backing file descriptors, and the fault mode checked
//! by every operation that writes or syncs.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

/// How long the kernel may cache names and attributes: every change goes through this
/// file system, so the kernel's view stays right; short anyway.
const TTL: Duration = Duration::from_secs(1);

/// What the file system does with writes and syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Everything is passed through.
    Ok = 0,
    /// Every fsync and fsyncdir fails with EIO.
    FsyncEio = 1,
    /// Every write, fallocate, truncate, fsync and fsyncdir fails with EIO.
    WriteEio = 2,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Ok => "ok",
            Mode::FsyncEio => "fsync-eio",
            Mode::WriteEio => "write-eio",
        }
    }
}

#[derive(Debug, Default)]
struct Tables {
    /// Path (relative to the backing directory) of each inode number handed out.
    paths: HashMap<u64, PathBuf>,
    /// The inode number of each path that exists.
    inodes: HashMap<PathBuf, u64>,
    next_inode: u64,
    files: HashMap<u64, Arc<File>>,
    next_handle: u64,
}

#[derive(Debug)]
pub struct FaultFs {
    backing: PathBuf,
    mode: Arc<AtomicU8>,
    tables: Mutex<Tables>,
}

fn errno(e: io::Error) -> Errno {
    match e.raw_os_error() {
        Some(_) => Errno::from(e),
        None => Errno::EIO,
    }
}

impl FaultFs {
    pub fn new(backing: PathBuf, mode: Arc<AtomicU8>) -> io::Result<FaultFs> {
        if !backing.is_dir() {
            return Err(io::Error::other(format!(
                "{} is not a directory",
                backing.display()
            )));
        }
        let mut tables = Tables {
            next_inode: 2,
            next_handle: 1,
            ..Tables::default()
        };
        tables.paths.insert(INodeNo::ROOT.0, PathBuf::new());
        tables.inodes.insert(PathBuf::new(), INodeNo::ROOT.0);
        Ok(FaultFs {
            backing,
            mode,
            tables: Mutex::new(tables),
        })
    }

    fn mode(&self) -> Mode {
        match self.mode.load(Ordering::SeqCst) {
            1 => Mode::FsyncEio,
            2 => Mode::WriteEio,
            _ => Mode::Ok,
        }
    }

    /// EIO if writes fail now.
    fn check_write(&self) -> Result<(), Errno> {
        match self.mode() {
            Mode::WriteEio => Err(Errno::EIO),
            _ => Ok(()),
        }
    }

    /// EIO if syncs fail now.
    fn check_sync(&self) -> Result<(), Errno> {
        match self.mode() {
            Mode::Ok => Ok(()),
            _ => Err(Errno::EIO),
        }
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().expect("tables")
    }

    fn relative(&self, ino: INodeNo) -> Result<PathBuf, Errno> {
        self.tables()
            .paths
            .get(&ino.0)
            .cloned()
            .ok_or(Errno::ENOENT)
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<PathBuf, Errno> {
        Ok(self.relative(parent)?.join(name))
    }

    fn full(&self, relative: &Path) -> PathBuf {
        self.backing.join(relative)
    }

    /// The inode number of `relative`, handed out now if it has none.
    fn inode(&self, relative: &Path) -> u64 {
        let mut t = self.tables();
        if let Some(&ino) = t.inodes.get(relative) {
            return ino;
        }
        let ino = t.next_inode;
        t.next_inode += 1;
        t.inodes.insert(relative.to_path_buf(), ino);
        t.paths.insert(ino, relative.to_path_buf());
        ino
    }

    fn attr_of(&self, ino: u64, meta: &std::fs::Metadata) -> FileAttr {
        let time = |secs: i64, nanos: i64| {
            UNIX_EPOCH + Duration::new(secs.max(0) as u64, nanos.clamp(0, 999_999_999) as u32)
        };
        let kind = match meta.file_type() {
            t if t.is_dir() => FileType::Directory,
            t if t.is_symlink() => FileType::Symlink,
            _ => FileType::RegularFile,
        };
        FileAttr {
            ino: INodeNo(ino),
            size: meta.len(),
            blocks: meta.blocks(),
            atime: time(meta.atime(), meta.atime_nsec()),
            mtime: time(meta.mtime(), meta.mtime_nsec()),
            ctime: time(meta.ctime(), meta.ctime_nsec()),
            crtime: time(meta.ctime(), meta.ctime_nsec()),
            kind,
            perm: (meta.mode() & 0o7777) as u16,
            nlink: meta.nlink() as u32,
            uid: meta.uid(),
            gid: meta.gid(),
            rdev: meta.rdev() as u32,
            blksize: meta.blksize() as u32,
            flags: 0,
        }
    }

    /// The attributes of `relative`, with its inode number.
    fn lookup_path(&self, relative: &Path) -> Result<FileAttr, Errno> {
        let meta = std::fs::symlink_metadata(self.full(relative)).map_err(errno)?;
        Ok(self.attr_of(self.inode(relative), &meta))
    }

    fn file(&self, fh: FileHandle) -> Result<Arc<File>, Errno> {
        self.tables().files.get(&fh.0).cloned().ok_or(Errno::EBADF)
    }

    fn keep_open(&self, file: File) -> FileHandle {
        let mut t = self.tables();
        let fh = t.next_handle;
        t.next_handle += 1;
        t.files.insert(fh, Arc::new(file));
        FileHandle(fh)
    }

    /// `relative` (and everything under it) no longer has a name: a path made there
    /// again gets a new inode number.
    fn forget_path(&self, relative: &Path) {
        let mut t = self.tables();
        t.inodes.retain(|path, _| !path.starts_with(relative));
    }

    fn renamed(&self, from: &Path, to: &Path) {
        let mut t = self.tables();
        t.inodes.retain(|path, _| !path.starts_with(to));
        let moved: Vec<(PathBuf, u64)> = t
            .inodes
            .iter()
            .filter(|(path, _)| path.starts_with(from))
            .map(|(path, &ino)| (path.clone(), ino))
            .collect();
        for (path, ino) in moved {
            t.inodes.remove(&path);
            // `to.join("")` would end in a separator, which names no file.
            let rest = path.strip_prefix(from).expect("under from");
            let new = match rest.as_os_str().is_empty() {
                true => to.to_path_buf(),
                false => to.join(rest),
            };
            t.paths.insert(ino, new.clone());
            t.inodes.insert(new, ino);
        }
    }

    fn open_backing(&self, relative: &Path, flags: i32, create: Option<u32>) -> io::Result<File> {
        let access = flags & libc::O_ACCMODE;
        let mut options = OpenOptions::new();
        options
            .read(access == libc::O_RDONLY || access == libc::O_RDWR)
            .write(access == libc::O_WRONLY || access == libc::O_RDWR)
            // The kernel gives each write its offset; O_APPEND would ignore it.
            .custom_flags(flags & !(libc::O_ACCMODE | libc::O_APPEND | libc::O_CREAT));
        if let Some(mode) = create {
            options.create(true).mode(mode);
        }
        options.open(self.full(relative))
    }

    fn set_attributes(
        &self,
        ino: INodeNo,
        mode: Option<u32>,
        size: Option<u64>,
        mtime: Option<TimeOrNow>,
        fh: Option<FileHandle>,
    ) -> Result<FileAttr, Errno> {
        let relative = self.relative(ino)?;
        let full = self.full(&relative);
        if let Some(mode) = mode {
            std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode & 0o7777))
                .map_err(errno)?;
        }
        if let Some(size) = size {
            self.check_write()?;
            match fh {
                Some(fh) => self.file(fh)?.set_len(size).map_err(errno)?,
                None => OpenOptions::new()
                    .write(true)
                    .open(&full)
                    .and_then(|f| f.set_len(size))
                    .map_err(errno)?,
            }
        }
        if let Some(mtime) = mtime {
            let when = match mtime {
                TimeOrNow::SpecificTime(t) => t,
                TimeOrNow::Now => SystemTime::now(),
            };
            let file = File::options().write(true).open(&full);
            if let Ok(file) = file {
                let _ = file.set_modified(when);
            }
        }
        self.lookup_path(&relative)
    }
}

impl FaultFs {
    /// Removes `name` in `parent` with `remove` (a file or a directory) and forgets its
    /// inode number.
    fn remove(
        &self,
        parent: INodeNo,
        name: &OsStr,
        remove: fn(PathBuf) -> io::Result<()>,
    ) -> Result<(), Errno> {
        let relative = self.child(parent, name)?;
        remove(self.full(&relative)).map_err(errno)?;
        self.forget_path(&relative);
        Ok(())
    }
}

/// Sends an operation's result as its kind of reply: the value, or the errno.
trait Answer<T> {
    fn answer(self, result: Result<T, Errno>);
}

impl Answer<()> for ReplyEmpty {
    fn answer(self, result: Result<(), Errno>) {
        match result {
            Ok(()) => self.ok(),
            Err(e) => self.error(e),
        }
    }
}

impl Answer<FileAttr> for ReplyAttr {
    fn answer(self, result: Result<FileAttr, Errno>) {
        match result {
            Ok(attr) => self.attr(&TTL, &attr),
            Err(e) => self.error(e),
        }
    }
}

impl Answer<FileAttr> for ReplyEntry {
    fn answer(self, result: Result<FileAttr, Errno>) {
        match result {
            Ok(attr) => self.entry(&TTL, &attr, Generation(0)),
            Err(e) => self.error(e),
        }
    }
}

impl Filesystem for FaultFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        reply.answer(self.child(parent, name).and_then(|p| self.lookup_path(&p)));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let attr = match fh.map(|fh| self.file(fh)) {
            Some(Ok(file)) => file
                .metadata()
                .map(|m| self.attr_of(ino.0, &m))
                .map_err(errno),
            _ => self.relative(ino).and_then(|p| self.lookup_path(&p)),
        };
        reply.answer(attr);
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.answer(self.set_attributes(ino, mode, size, mtime, fh));
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let made = self.child(parent, name).and_then(|relative| {
            self.check_write()?;
            std::fs::DirBuilder::new()
                .mode(mode & !umask & 0o7777)
                .create(self.full(&relative))
                .map_err(errno)?;
            self.lookup_path(&relative)
        });
        reply.answer(made);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply.answer(self.remove(parent, name, std::fs::remove_file));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply.answer(self.remove(parent, name, std::fs::remove_dir));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let renamed = (|| {
            let from = self.child(parent, name)?;
            let to = self.child(newparent, newname)?;
            if !flags.is_empty() {
                return Err(Errno::EINVAL);
            }
            std::fs::rename(self.full(&from), self.full(&to)).map_err(errno)?;
            self.renamed(&from, &to);
            Ok(())
        })();
        reply.answer(renamed);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let opened = self
            .relative(ino)
            .and_then(|relative| self.open_backing(&relative, flags.0, None).map_err(errno));
        match opened {
            // No direct_io: the kernel caches pages, so shared maps work.
            Ok(file) => reply.opened(self.keep_open(file), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let created = self.child(parent, name).and_then(|relative| {
            self.check_write()?;
            let file = self
                .open_backing(&relative, flags, Some(mode & !umask & 0o7777))
                .map_err(errno)?;
            Ok((self.lookup_path(&relative)?, file))
        });
        match created {
            Ok((attr, file)) => {
                let fh = self.keep_open(file);
                reply.created(&TTL, &attr, Generation(0), fh, FopenFlags::empty());
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let read = self.file(fh).and_then(|file| {
            let mut buf = vec![0; size as usize];
            let mut filled = 0;
            while filled < buf.len() {
                match file.read_at(&mut buf[filled..], offset + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(errno(e)),
                }
            }
            buf.truncate(filled);
            Ok(buf)
        });
        match read {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let written = self.check_write().and_then(|()| {
            let file = self.file(fh)?;
            file.write_all_at(data, offset).map_err(errno)
        });
        match written {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.tables().files.remove(&fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let synced = self.check_sync().and_then(|()| {
            let file = self.file(fh)?;
            match datasync {
                true => file.sync_data(),
                false => file.sync_all(),
            }
            .map_err(errno)
        });
        reply.answer(synced);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let opened = self
            .relative(ino)
            .and_then(|relative| File::open(self.full(&relative)).map_err(errno));
        match opened {
            Ok(dir) => reply.opened(self.keep_open(dir), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let listed = self.relative(ino).and_then(|relative| {
            let mut entries = vec![
                (ino.0, FileType::Directory, ".".into()),
                (ino.0, FileType::Directory, "..".into()),
            ];
            for entry in std::fs::read_dir(self.full(&relative)).map_err(errno)? {
                let entry = entry.map_err(errno)?;
                let kind = match entry.file_type().map_err(errno)? {
                    t if t.is_dir() => FileType::Directory,
                    t if t.is_symlink() => FileType::Symlink,
                    _ => FileType::RegularFile,
                };
                let name = entry.file_name();
                let child = self.inode(&relative.join(&name));
                entries.push((child, kind, name));
            }
            Ok(entries)
        });
        match listed {
            Ok(entries) => {
                for (i, (child, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
                    if reply.add(INodeNo(*child), (i + 1) as u64, *kind, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.tables().files.remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let synced = self
            .check_sync()
            .and_then(|()| self.file(fh)?.sync_all().map_err(errno));
        reply.answer(synced);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let path = std::ffi::CString::new(self.backing.as_os_str().as_encoded_bytes())
            .expect("no NUL in a path");
        // SAFETY: a plain C struct, all zeroes is a valid value.
        let mut st = unsafe { std::mem::zeroed::<libc::statvfs>() };
        // SAFETY: statvfs with a NUL-terminated path and a struct to fill.
        let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
        if rc != 0 {
            reply.error(errno(io::Error::last_os_error()));
            return;
        }
        reply.statfs(
            st.f_blocks,
            st.f_bfree,
            st.f_bavail,
            st.f_files,
            st.f_ffree,
            st.f_bsize as u32,
            st.f_namemax as u32,
            st.f_frsize as u32,
        );
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let allocated = self.check_write().and_then(|()| {
            let file = self.file(fh)?;
            // SAFETY: fallocate on a descriptor this file system keeps open.
            let rc =
                unsafe { libc::fallocate(file.as_raw_fd(), mode, offset as i64, length as i64) };
            match rc {
                0 => Ok(()),
                _ => Err(errno(io::Error::last_os_error())),
            }
        });
        reply.answer(allocated);
    }
}
