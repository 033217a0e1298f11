//! Handing freed heap memory back to the operating system.

/// Return free memory at the top of, and inside, every malloc arena to the kernel.
///
/// QuickJS allocates with the C allocator. After a script ran a runtime out of memory and the
/// runtime was freed, glibc keeps the freed pages mapped (in the arena of the worker thread
/// that used them) unless asked; this is how the host's RSS gets back to its baseline.
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes no pointers and only reorganises the allocator's own free
    // lists under its arena locks; it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A QuickJS allocator that enforces a heap limit itself and records that it refused an
/// allocation, so an out-of-memory is recognised even when the engine could not allocate its
/// error object and the heap emptied again while the exception unwound.
pub struct LimitedAllocator {
    used: usize,
    limit: usize,
    refused: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl LimitedAllocator {
    /// An allocator refusing to go past `limit` bytes; `refused` is set when it does.
    pub fn new(limit: usize, refused: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Self {
        LimitedAllocator {
            used: 0,
            limit,
            refused,
        }
    }

    fn over(&self, more: usize) -> bool {
        if self.used.saturating_add(more) > self.limit {
            self.refused
                .store(true, std::sync::atomic::Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    fn usable(ptr: *mut u8) -> usize {
        if ptr.is_null() {
            return 0;
        }
        // SAFETY: `ptr` is non-null and was returned by this allocator's malloc/calloc/realloc,
        // which all come from the C allocator that `malloc_usable_size` inspects.
        unsafe { libc::malloc_usable_size(ptr.cast()) }
    }
}

// SAFETY: every pointer returned comes straight from the C allocator (malloc, calloc,
// realloc), which aligns to at least `usize`, or is null; `usable_size` asks that same
// allocator. The byte count only decides whether to refuse; it never affects a pointer.
unsafe impl rquickjs::allocator::Allocator for LimitedAllocator {
    fn alloc(&mut self, size: usize) -> *mut u8 {
        if self.over(size) {
            return std::ptr::null_mut();
        }
        // SAFETY: malloc with any size is sound; a null result is passed on.
        let ptr = unsafe { libc::malloc(size) }.cast::<u8>();
        self.used += Self::usable(ptr);
        ptr
    }

    fn calloc(&mut self, count: usize, size: usize) -> *mut u8 {
        if self.over(count.saturating_mul(size)) {
            return std::ptr::null_mut();
        }
        // SAFETY: calloc checks the multiplication itself and returns null on overflow.
        let ptr = unsafe { libc::calloc(count, size) }.cast::<u8>();
        self.used += Self::usable(ptr);
        ptr
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8) {
        self.used = self.used.saturating_sub(Self::usable(ptr));
        // SAFETY: the caller passes a pointer from this allocator (or null, which free accepts).
        unsafe { libc::free(ptr.cast()) }
    }

    unsafe fn realloc(&mut self, ptr: *mut u8, new_size: usize) -> *mut u8 {
        let old = Self::usable(ptr);
        if new_size > old && self.over(new_size - old) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller passes a pointer from this allocator or null; on failure realloc
        // leaves the old block untouched, and our count with it.
        let new = unsafe { libc::realloc(ptr.cast(), new_size) }.cast::<u8>();
        if !new.is_null() || new_size == 0 {
            self.used = self.used.saturating_sub(old) + Self::usable(new);
        }
        new
    }

    unsafe fn usable_size(ptr: *mut u8) -> usize {
        Self::usable(ptr)
    }
}
