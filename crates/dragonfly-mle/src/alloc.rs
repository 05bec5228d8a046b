//! The process allocator: mimalloc, through its plain (unaligned) entry points wherever they
//! give the alignment asked for.
//!
//! mlua allocates every LuaJIT object with 16-byte alignment. mimalloc's aligned entry point
//! serves such a request from its fast path only while the size class's current page has a
//! free block; otherwise, for sizes that are not powers of two (24, 48, 80 bytes: most Lua
//! tables, strings and userdata), it over-allocates (size + 15 from a larger size class, then
//! adjusts), never refilling the page it missed: measured ~9 over-allocations per event in the
//! hello-world benchmark. Its plain `mi_malloc` refills pages, and every size class whose block
//! size is a multiple of 16 hands out 16-aligned blocks (blocks start 16-aligned in a page), so
//! a request of alignment <= 16 is served by `mi_malloc` with its size rounded up to the
//! alignment.
//!
//! Guarantees: every block is at least as large and as aligned as asked — the alignment is
//! checked on every allocation, and a block that is not aligned (never seen) is given back and
//! the request served by mimalloc's aligned entry point. Cost: a rounding and a test per call.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// mimalloc, asked through its plain entry points when they give the alignment required.
pub struct Allocator;

/// Alignments mimalloc's plain entry points can give (its `MI_MAX_ALIGN_SIZE`).
const PLAIN_ALIGN: usize = 16;

/// `size` rounded up to a multiple of `align` (<= [`PLAIN_ALIGN`]): a size class whose blocks
/// are multiples of the alignment. Cannot overflow: `Layout` keeps size + align within isize.
fn rounded(size: usize, align: usize) -> usize {
    size.next_multiple_of(align)
}

fn aligned(p: *mut c_void, align: usize) -> bool {
    (p as usize) & (align - 1) == 0
}

/// A block for `layout` from `plain` (size rounded up to the alignment) if it comes back
/// aligned, else from `aligned` (size, alignment).
///
/// # Safety
/// `plain` and `aligned` are mimalloc allocation functions with those signatures.
unsafe fn serve(
    layout: Layout,
    plain: unsafe extern "C" fn(usize) -> *mut c_void,
    aligned_alloc: unsafe extern "C" fn(usize, usize) -> *mut c_void,
) -> *mut u8 {
    let align = layout.align();
    // SAFETY: plain FFI calls into mimalloc; a block that fails the check is freed once
    unsafe {
        if align <= PLAIN_ALIGN {
            let p = plain(rounded(layout.size(), align));
            if aligned(p, align) {
                return p.cast();
            }
            mi::mi_free(p);
        }
        aligned_alloc(layout.size(), align).cast()
    }
}

// SAFETY: every block returned is non-null only if it is at least `layout.size()` bytes (or
// `new_size` for realloc) and aligned to `layout.align()` (checked, or given by mimalloc's
// aligned entry points, which guarantee it); every block comes from mimalloc, which frees and
// reallocates any of its blocks by pointer alone.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: mimalloc's allocating entry points, paired as serve() requires
        unsafe { serve(layout, mi::mi_malloc, mi::mi_malloc_aligned) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for alloc, the zeroing pair
        unsafe { serve(layout, mi::mi_zalloc, mi::mi_zalloc_aligned) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: ptr came from this allocator, so from mimalloc
        unsafe { mi::mi_free(ptr.cast()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let align = layout.align();
        // SAFETY: ptr came from this allocator with `layout`; on a misaligned result the
        // contents (min of old and new size) are copied into an aligned block before the
        // misaligned one is freed
        unsafe {
            if align > PLAIN_ALIGN {
                return mi::mi_realloc_aligned(ptr.cast(), new_size, align).cast();
            }
            let q = mi::mi_realloc(ptr.cast(), rounded(new_size, align));
            if q.is_null() || aligned(q, align) {
                return q.cast();
            }
            let r = mi::mi_malloc_aligned(new_size, align);
            if !r.is_null() {
                std::ptr::copy_nonoverlapping(
                    q.cast::<u8>(),
                    r.cast::<u8>(),
                    new_size.min(layout.size()),
                );
                mi::mi_free(q);
            }
            // on failure the original block (now q) stays allocated: realloc's contract
            r.cast()
        }
    }
}

/// Transparent huge pages off for this process (`prctl(PR_SET_THP_DISABLE)`; children
/// inherit it), unless `MIMALLOC_ALLOW_THP` says otherwise —
/// mimalloc's own option for the same choice, which it reads too late to act on here (our
/// allocations start before `main`).
///
/// Why: mimalloc gives pages it has not used for a second back to the system and takes them
/// again as the engine's working set moves (Lua garbage, batches, store values); with THP each
/// of those faults makes the kernel clear a 2 MiB page. Measured on examples/triage, one
/// worker, corpus x4, 3 alternating runs: system time 0.60 -> 0.17 s of ~5.5 CPU-s, user time
/// the same, peak RSS 159 -> 87 MB. Failure (an old kernel) changes nothing and is ignored.
pub fn tame_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return;
    }
    let _ = nix::sys::prctl::set_thp_disable(true);
}

/// Give the calling thread's cached free memory back to the system (mimalloc's `mi_collect`
/// with `force`): for threads that held a large buffer once and may sit idle afterwards.
pub fn release() {
    // SAFETY: mi_collect takes no pointers; it works on the calling thread's own heap.
    unsafe { mi::mi_collect(true) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_as_large_and_aligned_as_asked() {
        for align in [1usize, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [1usize, 7, 8, 15, 16, 17, 24, 40, 48, 100, 4096, 70_000] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: non-zero sizes; every block freed once with its layout
                unsafe {
                    let p = Allocator.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    std::ptr::write_bytes(p, 0xa5, size);
                    let q = Allocator.realloc(p, layout, size * 3 + 1);
                    assert_eq!(q as usize % align, 0, "realloc size {size} align {align}");
                    assert!(std::slice::from_raw_parts(q, size)
                        .iter()
                        .all(|&b| b == 0xa5));
                    let r = Allocator.realloc(
                        q,
                        Layout::from_size_align(size * 3 + 1, align).unwrap(),
                        size,
                    );
                    assert_eq!(r as usize % align, 0, "shrink size {size} align {align}");
                    assert!(std::slice::from_raw_parts(r, size)
                        .iter()
                        .all(|&b| b == 0xa5));
                    Allocator.dealloc(r, layout);
                    let z = Allocator.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0);
                    assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                    Allocator.dealloc(z, layout);
                }
            }
        }
    }

    /// Many live blocks of the sizes LuaJIT asks for most, at its alignment (16): every one
    /// aligned, none overlapping another.
    #[test]
    fn lua_sized_blocks_are_aligned_and_distinct() {
        let mut blocks = Vec::new();
        for i in 0..20_000usize {
            let size = [24, 40, 48, 56, 72, 80, 88, 120][i % 8];
            let layout = Layout::from_size_align(size, 16).unwrap();
            // SAFETY: non-zero size; freed below with the same layout
            let p = unsafe { Allocator.alloc(layout) };
            assert_eq!(p as usize % 16, 0);
            // SAFETY: p holds size bytes
            unsafe { std::ptr::write_bytes(p, (i % 251) as u8, size) };
            blocks.push((p, layout, (i % 251) as u8));
        }
        for (p, layout, b) in blocks {
            // SAFETY: p holds layout.size() bytes written above; freed once
            unsafe {
                assert!(std::slice::from_raw_parts(p, layout.size())
                    .iter()
                    .all(|&x| x == b));
                Allocator.dealloc(p, layout);
            }
        }
    }
}
