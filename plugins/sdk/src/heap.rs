//! A size-class allocator for plugins, the SDK's `#[global_allocator]` in
//! WebAssembly (cargo feature `size-class-allocator`, on by default).
//!
//! A warm `decide` allocates and frees about twenty small blocks: every
//! string and list of the evaluation the host hands over is one `realloc`
//! into the guest, and each is freed when the evaluation is dropped. The
//! general-purpose allocator the standard library brings (dlmalloc) spends
//! much of a call on that bookkeeping. This one rounds a request up to a
//! power of two from 8 bytes to 32 KiB (its class) and keeps one free list
//! per class: an allocation pops its class's list (or carves the next block
//! of the class's current page), a free pushes the block back, and a
//! `realloc` that stays within its class keeps its block. Pages come from
//! `memory.grow` one 64 KiB WebAssembly page at a time and are split into
//! blocks of one class; every block is aligned to its size, so any
//! alignment up to the block's size is met. Larger (or more aligned)
//! requests go to the standard library's allocator, which also takes its
//! memory from `memory.grow` and does not assume its pages are contiguous.
//!
//! Memory, once given to a class, stays with that class: a plugin whose
//! calls allocate the same shapes every time (the common case) reuses the
//! same blocks, but one that holds many small blocks of one size, frees
//! them and then needs another size keeps both sets of pages. A plugin
//! author who would rather have the standard allocator turns the feature
//! off (`default-features = false` on `flinkscale-plugin`), or installs a
//! `#[global_allocator]` of their own with it off.
//!
//! The allocator is not thread-safe: a component instance is
//! single-threaded, and it is only `Sync` (as a `static` global allocator
//! must be) in WebAssembly builds without the `atomics` target feature.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ptr;

/// Bytes of one WebAssembly page, the unit `memory.grow` hands out.
const PAGE: usize = 65_536;

/// log2 of the smallest block: 8 bytes, room for the free list's link.
const MIN_SHIFT: u32 = 3;

/// log2 of the largest block: 32 KiB, two blocks per page.
const MAX_SHIFT: u32 = 15;

/// Number of size classes, 8 bytes to 32 KiB.
const CLASSES: usize = (MAX_SHIFT - MIN_SHIFT + 1) as usize;

/// A free block's first word: the next free block of its class, or null.
struct FreeBlock {
    next: *mut FreeBlock,
}

/// One size class: its free blocks, and the rest of the page being carved.
struct Class {
    /// The most recently freed block; the list goes on through `next`.
    free: Cell<*mut FreeBlock>,
    /// The next block not yet handed out in the class's newest page.
    bump: Cell<*mut u8>,
    /// One past the end of the class's newest page (null: no page yet).
    end: Cell<*mut u8>,
}

/// The allocator: one [`Class`] per power of two from 8 bytes to 32 KiB,
/// over pages from `memory.grow`; larger blocks from [`System`].
pub struct SizeClassAllocator {
    classes: [Class; CLASSES],
}

// SAFETY: without the `atomics` target feature a WebAssembly module has one
// thread, so the `Cell`s are never touched concurrently.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
unsafe impl Sync for SizeClassAllocator {}

impl SizeClassAllocator {
    /// An allocator with no pages yet.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        #[allow(clippy::declare_interior_mutable_const)]
        const EMPTY: Class = Class {
            free: Cell::new(ptr::null_mut()),
            bump: Cell::new(ptr::null_mut()),
            end: Cell::new(ptr::null_mut()),
        };
        SizeClassAllocator {
            classes: [EMPTY; CLASSES],
        }
    }

    /// The class serving `layout`, or `None` when the block is too large
    /// (or too aligned) for a class.
    #[inline]
    fn class_of(layout: Layout) -> Option<usize> {
        // A block is aligned to its size, so asking for `max(size, align)`
        // meets both.
        let size = layout.size().max(layout.align());
        if size > 1 << MAX_SHIFT {
            return None;
        }
        // `size <= 32 KiB`, so `next_power_of_two` cannot overflow.
        let shift = size.next_power_of_two().trailing_zeros().max(MIN_SHIFT);
        Some((shift - MIN_SHIFT) as usize)
    }

    /// Bytes of a block of class `class`.
    #[inline]
    fn block_size(class: usize) -> usize {
        1 << (class as u32 + MIN_SHIFT)
    }

    /// A block of class `class`, or null when memory cannot grow.
    #[inline]
    fn alloc_in(&self, class: usize) -> *mut u8 {
        let c = &self.classes[class];
        let head = c.free.get();
        if !head.is_null() {
            // SAFETY: every block on the list was pushed by `dealloc_in`,
            // which wrote its link; blocks are at least 8 bytes and aligned
            // to their size, so the word is in bounds and aligned.
            c.free.set(unsafe { (*head).next });
            return head.cast();
        }
        let size = Self::block_size(class);
        let mut bump = c.bump.get();
        if bump == c.end.get() {
            let page = grow_page();
            if page.is_null() {
                return ptr::null_mut();
            }
            bump = page;
            // SAFETY: the page is `PAGE` bytes: this is one past its end.
            c.end.set(unsafe { page.add(PAGE) });
        }
        // SAFETY: `size` divides `PAGE` and `bump` is a multiple of `size`
        // into the page, so `bump + size` is at most one past its end.
        c.bump.set(unsafe { bump.add(size) });
        // A page is 64 KiB-aligned and `size` divides 64 KiB, so every
        // block carved from it is aligned to `size`.
        bump
    }

    /// Returns a block of class `class` to its free list.
    ///
    /// # Safety
    ///
    /// `block` came from `alloc_in(class)` and is not used afterwards.
    #[inline]
    unsafe fn dealloc_in(&self, block: *mut u8, class: usize) {
        let c = &self.classes[class];
        let block = block.cast::<FreeBlock>();
        // SAFETY: the caller gives the block back; it is at least 8 bytes
        // and aligned to its size (see `alloc_in`).
        unsafe { block.write(FreeBlock { next: c.free.get() }) };
        c.free.set(block);
    }
}

// SAFETY: a class block is `block_size(class)` bytes, at least the layout's
// size, aligned to its size and so to the layout's alignment, and handed
// out once until freed; `class_of` depends only on the layout, so a block
// is freed (or reallocated) into the class (or the `System` allocator) it
// came from. Other blocks are `System`'s own.
unsafe impl GlobalAlloc for SizeClassAllocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match Self::class_of(layout) {
            Some(class) => self.alloc_in(class),
            // SAFETY: the caller's contract is `System`'s.
            None => unsafe { System.alloc(layout) },
        }
    }

    #[inline]
    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        match Self::class_of(layout) {
            // SAFETY: `block` was allocated with `layout`, so in `class`.
            Some(class) => unsafe { self.dealloc_in(block, class) },
            // SAFETY: `block` was allocated by `System` with `layout`.
            None => unsafe { System.dealloc(block, layout) },
        }
    }

    #[inline]
    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller promises `new_size`, rounded up to the
        // alignment, does not overflow `isize`.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (Self::class_of(layout), Self::class_of(new_layout)) {
            // The block already holds `block_size(class) >= new_size` bytes.
            (Some(old), Some(new)) if old == new => block,
            // SAFETY: both blocks are `System`'s, same alignment.
            (None, None) => unsafe { System.realloc(block, layout, new_size) },
            (_, _) => {
                // SAFETY: `new_layout` is valid (above) and non-zero-sized
                // (`new_size` is non-zero by `realloc`'s contract).
                let moved = unsafe { self.alloc(new_layout) };
                if !moved.is_null() {
                    // SAFETY: both blocks hold at least the smaller size and
                    // are distinct (the old one is still allocated).
                    unsafe {
                        ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                }
                moved
            }
        }
    }
}

/// One new 64 KiB-aligned page of 64 KiB, or null when memory cannot grow.
#[cfg(target_arch = "wasm32")]
fn grow_page() -> *mut u8 {
    let previous = core::arch::wasm32::memory_grow(0, 1);
    if previous == usize::MAX {
        return ptr::null_mut();
    }
    // The new page starts where memory ended, at page `previous`; linear
    // memory is address space 0, so the address is the pointer.
    ptr::with_exposed_provenance_mut(previous * PAGE)
}

/// One new 64 KiB-aligned page of 64 KiB, or null when memory cannot grow.
///
/// Natively (the unit tests) the page comes from [`System`] and is never
/// given back, as WebAssembly memory never shrinks.
#[cfg(not(target_arch = "wasm32"))]
fn grow_page() -> *mut u8 {
    // SAFETY: the layout is non-zero-sized with a power-of-two alignment.
    unsafe { System.alloc(Layout::from_size_align_unchecked(PAGE, PAGE)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn classes_round_up_to_powers_of_two_from_8_bytes() {
        assert_eq!(SizeClassAllocator::class_of(layout(1, 1)), Some(0));
        assert_eq!(SizeClassAllocator::class_of(layout(8, 1)), Some(0));
        assert_eq!(SizeClassAllocator::class_of(layout(9, 1)), Some(1));
        assert_eq!(SizeClassAllocator::class_of(layout(4, 16)), Some(1));
        assert_eq!(SizeClassAllocator::class_of(layout(320, 8)), Some(6));
        assert_eq!(
            SizeClassAllocator::class_of(layout(32_768, 8)),
            Some(CLASSES - 1)
        );
        assert_eq!(SizeClassAllocator::class_of(layout(32_769, 8)), None);
        assert_eq!(SizeClassAllocator::class_of(layout(8, 65_536)), None);
    }

    #[test]
    fn blocks_are_aligned_distinct_and_writable() {
        let heap = SizeClassAllocator::new();
        let mut blocks = Vec::new();
        for (size, align) in [
            (1, 1),
            (7, 4),
            (16, 8),
            (24, 8),
            (100, 16),
            (3, 64),
            (5000, 8),
        ] {
            for _ in 0..50 {
                let l = layout(size, align);
                let p = unsafe { heap.alloc(l) };
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0, "{size} bytes aligned to {align}");
                unsafe { ptr::write_bytes(p, blocks.len() as u8, size) };
                blocks.push((p, l));
            }
        }
        // No two blocks overlap: each still holds its own fill byte.
        for (i, &(p, l)) in blocks.iter().enumerate() {
            let bytes = unsafe { std::slice::from_raw_parts(p, l.size()) };
            assert!(bytes.iter().all(|&b| b == i as u8), "block {i} overwritten");
        }
        for (p, l) in blocks {
            unsafe { heap.dealloc(p, l) };
        }
    }

    #[test]
    fn freed_blocks_are_reused_last_in_first_out() {
        let heap = SizeClassAllocator::new();
        let l = layout(20, 4);
        let a = unsafe { heap.alloc(l) };
        let b = unsafe { heap.alloc(l) };
        assert_ne!(a, b);
        unsafe {
            heap.dealloc(a, l);
            heap.dealloc(b, l);
        }
        assert_eq!(unsafe { heap.alloc(l) }, b);
        assert_eq!(unsafe { heap.alloc(l) }, a);
        // A same-class request of another size gets the next block too.
        let c = unsafe { heap.alloc(layout(32, 8)) };
        assert!(c != a && c != b);
    }

    #[test]
    fn a_class_takes_a_new_page_when_its_page_is_used_up() {
        let heap = SizeClassAllocator::new();
        let l = layout(32_768, 8);
        let blocks: Vec<*mut u8> = (0..5).map(|_| unsafe { heap.alloc(l) }).collect();
        for (i, &p) in blocks.iter().enumerate() {
            assert_eq!(p as usize % 32_768, 0);
            unsafe { ptr::write_bytes(p, i as u8, 32_768) };
        }
        let mut sorted = blocks.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 5, "five distinct blocks");
        for (i, &p) in blocks.iter().enumerate() {
            assert_eq!(unsafe { *p.add(32_767) }, i as u8);
            unsafe { heap.dealloc(p, l) };
        }
    }

    #[test]
    fn realloc_keeps_the_block_within_its_class_and_moves_it_across() {
        let heap = SizeClassAllocator::new();
        let l = layout(9, 1);
        let p = unsafe { heap.alloc(l) };
        unsafe { ptr::copy_nonoverlapping(b"abcdefghi".as_ptr(), p, 9) };
        // 9 and 16 bytes are both the 16-byte class: same block.
        let same = unsafe { heap.realloc(p, l, 16) };
        assert_eq!(same, p);
        // 17 bytes is the next class: a new block with the old contents.
        let moved = unsafe { heap.realloc(same, layout(16, 1), 17) };
        assert_ne!(moved, p);
        assert_eq!(
            unsafe { std::slice::from_raw_parts(moved, 9) },
            b"abcdefghi"
        );
        // The old block went back to its class's list.
        assert_eq!(unsafe { heap.alloc(layout(16, 1)) }, p);
        // Shrinking into a smaller class moves too, keeping the prefix.
        let small = unsafe { heap.realloc(moved, layout(17, 1), 3) };
        assert_eq!(unsafe { std::slice::from_raw_parts(small, 3) }, b"abc");
        unsafe { heap.dealloc(small, layout(3, 1)) };
    }

    #[test]
    fn large_blocks_come_from_the_system_allocator_and_grow_across_the_boundary() {
        let heap = SizeClassAllocator::new();
        let big = layout(100_000, 8);
        let p = unsafe { heap.alloc(big) };
        assert!(!p.is_null());
        unsafe { ptr::write_bytes(p, 7, 100_000) };
        // Large to larger: `System`'s realloc.
        let p = unsafe { heap.realloc(p, big, 200_000) };
        assert_eq!(unsafe { *p.add(99_999) }, 7);
        // Large to a class block and back keeps the prefix each time.
        let small = unsafe { heap.realloc(p, layout(200_000, 8), 64) };
        assert_eq!(unsafe { std::slice::from_raw_parts(small, 64) }, &[7; 64]);
        let again = unsafe { heap.realloc(small, layout(64, 8), 40_000) };
        assert_eq!(unsafe { std::slice::from_raw_parts(again, 64) }, &[7; 64]);
        unsafe { heap.dealloc(again, layout(40_000, 8)) };
    }

    #[test]
    fn a_vec_and_a_string_grow_and_drop_through_it() {
        // The shapes a plugin's bindings produce: a buffer grown by
        // doubling, then freed with the layout it ended with.
        let heap = SizeClassAllocator::new();
        let mut layout_now = layout(1, 1);
        let mut p = unsafe { heap.alloc(layout_now) };
        unsafe { *p = 0 };
        let mut len = 1;
        while len < 70_000 {
            let grown = len * 2;
            p = unsafe { heap.realloc(p, layout_now, grown) };
            assert!(!p.is_null());
            for i in len..grown {
                unsafe { *p.add(i) = i as u8 };
            }
            layout_now = layout(grown, 1);
            len = grown;
        }
        let bytes = unsafe { std::slice::from_raw_parts(p, len) };
        assert!(bytes.iter().enumerate().skip(1).all(|(i, &b)| b == i as u8));
        unsafe { heap.dealloc(p, layout_now) };
    }
}
