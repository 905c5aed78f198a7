//! Memory helpers the stages share.

/// Hints the processor to fetch the cache line at `p` ahead of use; nothing else. Stages that
/// read records in an order unrelated to their layout (a pair's right-hand record, a cluster's
/// members) ask for rows a few steps ahead, so that the waits on memory overlap.
#[inline(always)]
pub fn prefetch<T>(p: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch only hints the cache; it reads nothing the program sees and the
    // address comes from a reference.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>((p as *const T).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
