//! Slow disks for the chaos suite, as an `LD_PRELOAD` library: every `fsync`,
//! `fdatasync`, `syncfs` and `sync_file_range` of the process first sleeps for the number
//! of milliseconds written in the file `HODEI_SLOW_DISK_FILE` names (0, or no file: no
//! delay), then does the real call. The nemesis writes the file to slow one node's disk
//! and writes 0 to heal it; the file is read again at most every 100 ms.
//!
//! Nothing here may allocate through Rust's allocator before it knows it is safe or
//! panic: the functions run inside any thread of the host process.

#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_int, c_uint, c_void};
use std::sync::atomic::{AtomicU64, Ordering};

type Fd1 = unsafe extern "C" fn(c_int) -> c_int;
type SyncRange = unsafe extern "C" fn(c_int, i64, i64, c_uint) -> c_int;

/// The delay last read, in ms, and when it was read (monotonic ms; 0: never).
static DELAY_MS: AtomicU64 = AtomicU64::new(0);
static READ_AT_MS: AtomicU64 = AtomicU64::new(0);

fn monotonic_ms() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec as u64) * 1_000 + (now.tv_nsec as u64) / 1_000_000
}

/// The delay the control file asks for, read again when the last read is 100 ms old.
fn delay_ms() -> u64 {
    let now = monotonic_ms();
    let read_at = READ_AT_MS.load(Ordering::Relaxed);
    if read_at != 0 && now.saturating_sub(read_at) < 100 {
        return DELAY_MS.load(Ordering::Relaxed);
    }
    READ_AT_MS.store(now.max(1), Ordering::Relaxed);
    let delay = read_control().unwrap_or(0);
    DELAY_MS.store(delay, Ordering::Relaxed);
    delay
}

/// The number in the control file, read with plain system calls.
fn read_control() -> Option<u64> {
    // SAFETY: getenv with a NUL-terminated name; the result is only read.
    let path = unsafe { libc::getenv(c"HODEI_SLOW_DISK_FILE".as_ptr()) };
    if path.is_null() {
        return None;
    }
    // SAFETY: a NUL-terminated path from the environment.
    let fd = unsafe { libc::open(path, libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut buffer = [0u8; 32];
    // SAFETY: reads at most the buffer's length into it.
    let read = unsafe { libc::read(fd, buffer.as_mut_ptr().cast::<c_void>(), buffer.len()) };
    // SAFETY: the descriptor opened above.
    unsafe { libc::close(fd) };
    if read <= 0 {
        return None;
    }
    let text = std::str::from_utf8(&buffer[..read as usize]).ok()?;
    text.trim().parse().ok()
}

fn pause() {
    let delay = delay_ms();
    if delay > 0 {
        let wait = libc::timespec {
            tv_sec: (delay / 1_000) as libc::time_t,
            tv_nsec: ((delay % 1_000) * 1_000_000) as libc::c_long,
        };
        // SAFETY: a valid timespec; an interrupted sleep just ends early.
        unsafe { libc::nanosleep(&wait, std::ptr::null_mut()) };
    }
}

/// The next definition of `name` after this library (libc's).
fn real(name: &CStr) -> *mut c_void {
    // SAFETY: dlsym with a NUL-terminated name; RTLD_NEXT skips this library.
    unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr() as *const c_char) }
}

fn call_fd(name: &CStr, fd: c_int) -> c_int {
    pause();
    let found = real(name);
    if found.is_null() {
        // SAFETY: errno is thread-local.
        unsafe { *libc::__errno_location() = libc::ENOSYS };
        return -1;
    }
    // SAFETY: libc's function of this signature.
    let function: Fd1 = unsafe { std::mem::transmute::<*mut c_void, Fd1>(found) };
    // SAFETY: the caller's arguments, passed on.
    unsafe { function(fd) }
}

/// # Safety
/// As libc's `fsync`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fsync(fd: c_int) -> c_int {
    call_fd(c"fsync", fd)
}

/// # Safety
/// As libc's `fdatasync`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fdatasync(fd: c_int) -> c_int {
    call_fd(c"fdatasync", fd)
}

/// # Safety
/// As libc's `syncfs`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn syncfs(fd: c_int) -> c_int {
    call_fd(c"syncfs", fd)
}

/// # Safety
/// As libc's `sync_file_range`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sync_file_range(
    fd: c_int,
    offset: i64,
    count: i64,
    flags: c_uint,
) -> c_int {
    pause();
    let found = real(c"sync_file_range");
    if found.is_null() {
        // SAFETY: errno is thread-local.
        unsafe { *libc::__errno_location() = libc::ENOSYS };
        return -1;
    }
    // SAFETY: libc's function of this signature.
    let function: SyncRange = unsafe { std::mem::transmute::<*mut c_void, SyncRange>(found) };
    // SAFETY: the caller's arguments, passed on.
    unsafe { function(fd, offset, count, flags) }
}
