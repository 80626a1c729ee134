//! Lowering a series' datapoints into a guest in one block.
//!
//! wasmtime lowers a `list<datapoint>` of generated records element by
//! element and field by field, looking the guest's memory up again for
//! every 8-byte store: in a release build that was about a quarter of a
//! warm `decide` of `step` (3 series of 20 datapoints; see the README's
//! "Writing a policy plugin"). A datapoint is two 8-byte numbers, so the
//! whole list is one block of `16 * len` bytes in the canonical ABI. The
//! host's evaluation record (`contract_bindings!` in `plugin/world.rs`) holds
//! its points as [`Points`], which asks the guest's `realloc` for the
//! block once and writes it in one pass over one view of memory. What the
//! guest receives is byte for byte what the generated records would give.

use std::mem::MaybeUninit;

use wasmtime::component::__internal::{
    CanonicalAbiInfo, InstanceType, InterfaceType, LowerContext, typecheck_record,
};
use wasmtime::component::{ComponentType, Lower};
use wasmtime::{ValRaw, bail};

use crate::metrics::Datapoint;

/// Bytes of one datapoint in the canonical ABI: `timestamp-ms: s64` at 0,
/// `value: f64` at 8.
const DATAPOINT_BYTES: usize = 16;

/// Alignment of a datapoint (and so of the list) in the canonical ABI.
const DATAPOINT_ALIGN: u32 = 8;

/// A series' datapoints as the contract's `list<datapoint>`, NaN values
/// already dropped (the contract promises the guest a value is never NaN).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Points(Vec<Datapoint>);

impl Points {
    /// Replaces the points with `from`'s, minus NaN values, keeping the
    /// buffer of the previous call.
    pub fn fill(&mut self, from: &[Datapoint]) {
        self.0.clear();
        self.0
            .extend(from.iter().filter(|p| !p.value.is_nan()).copied());
    }

    /// The points, as the guest will see them.
    pub fn as_slice(&self) -> &[Datapoint] {
        &self.0
    }

    /// Copies the points into a new block of guest memory; answers its
    /// address and length.
    fn lower_block<T>(&self, cx: &mut LowerContext<'_, T>) -> wasmtime::Result<(usize, usize)> {
        let Some(size) = self.0.len().checked_mul(DATAPOINT_BYTES) else {
            bail!("size overflow copying {} datapoints", self.0.len());
        };
        let address = cx.realloc(0, 0, DATAPOINT_ALIGN, size)?;
        // `realloc` has checked that `address..address + size` is inside
        // memory; `get_mut` checks again rather than trusting it.
        let Some(block) = cx
            .as_slice_mut()
            .get_mut(address..)
            .and_then(|memory| memory.get_mut(..size))
        else {
            bail!("realloc return: beyond end of memory");
        };
        for (bytes, point) in block.chunks_exact_mut(DATAPOINT_BYTES).zip(&self.0) {
            let (timestamp, value) = bytes.split_at_mut(8);
            timestamp.copy_from_slice(&point.timestamp_ms.to_le_bytes());
            value.copy_from_slice(&point.value.to_le_bytes());
        }
        Ok((address, self.0.len()))
    }
}

/// The address and length of a list, as 32-bit guest values.
fn pointer_pair(address: usize, len: usize) -> wasmtime::Result<(u32, u32)> {
    match (u32::try_from(address), u32::try_from(len)) {
        (Ok(address), Ok(len)) => Ok((address, len)),
        _ => bail!("a list at {address} of {len} datapoints does not fit a 32-bit memory"),
    }
}

// SAFETY: a list is a pointer pair whatever its element type, so `Lower`
// and `ABI` are those wasmtime gives every list (`[T]`); `typecheck`
// accepts only `list<record { timestamp-ms: s64, value: f64 }>`, the
// layout `lower_block` writes.
unsafe impl ComponentType for Points {
    type Lower = [ValRaw; 2];

    const ABI: CanonicalAbiInfo = CanonicalAbiInfo::POINTER_PAIR;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        match ty {
            InterfaceType::List(list) => typecheck_record(
                &types.types[*list].element,
                types,
                &[
                    ("timestamp-ms", <i64 as ComponentType>::typecheck),
                    ("value", <f64 as ComponentType>::typecheck),
                ],
            ),
            _ => bail!("expected `list<datapoint>`"),
        }
    }
}

// SAFETY: writes exactly what `Vec<datapoint>` would (see `ComponentType`).
unsafe impl Lower for Points {
    fn linear_lower_to_flat<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        _ty: InterfaceType,
        dst: &mut MaybeUninit<[ValRaw; 2]>,
    ) -> wasmtime::Result<()> {
        let (address, len) = self.lower_block(cx)?;
        let (address, len) = pointer_pair(address, len)?;
        // A pointer in a flat list of core values is always stored as a
        // 64-bit integer (wasmtime's `lower_pointer_pair_to_flat`).
        dst.write([ValRaw::i64(i64::from(address)), ValRaw::i64(i64::from(len))]);
        Ok(())
    }

    fn linear_lower_to_memory<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        _ty: InterfaceType,
        offset: usize,
    ) -> wasmtime::Result<()> {
        let (address, len) = self.lower_block(cx)?;
        let (address, len) = pointer_pair(address, len)?;
        *cx.get::<4>(offset) = address.to_le_bytes();
        *cx.get::<4>(offset + 4) = len.to_le_bytes();
        Ok(())
    }
}
