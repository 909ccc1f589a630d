//! The safetensors header of a checkpoint, checked before its data is touched: the header
//! length fits the file, and every tensor has a dtype a checkpoint holds and byte offsets
//! inside the data that match its shape. Each fault names the tensor and says what is
//! wrong (the safetensors crate reports an offset fault under a neighbouring tensor's
//! name, and a shape fault under none).

use std::collections::BTreeMap;

use serde::Deserialize;

/// The largest header read (as the safetensors crate allows).
const MAX_HEADER: u64 = 100 << 20;

#[derive(Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

/// Bytes per element of the dtypes a checkpoint stores.
fn element_bytes(dtype: &str) -> Option<u64> {
    match dtype {
        "F32" => Some(4),
        "F16" | "BF16" => Some(2),
        _ => None,
    }
}

/// Checks the header of the safetensors `bytes`; the message names what is wrong.
pub fn check(bytes: &[u8]) -> Result<(), String> {
    let Some(prefix) = bytes.get(..8) else {
        return Err(format!(
            "is {} bytes, shorter than a safetensors header; is it truncated?",
            bytes.len()
        ));
    };
    let n = u64::from_le_bytes(prefix.try_into().expect("8 bytes"));
    let rest = bytes.len() as u64 - 8;
    if n > MAX_HEADER || n > rest {
        return Err(format!(
            "header length {n} exceeds the {rest} bytes after it{}",
            if n > MAX_HEADER {
                " (and the 100 MiB a header may have): not a safetensors file?"
            } else {
                "; is it truncated?"
            }
        ));
    }
    let header = &bytes[8..8 + n as usize];
    let data_len = rest - n;
    let map: BTreeMap<String, serde_json::Value> = serde_json::from_slice(header)
        .map_err(|e| format!("header is not a JSON object of tensors ({e}); corrupt?"))?;
    let mut spans = Vec::new();
    for (name, v) in map.into_iter().filter(|(k, _)| k != "__metadata__") {
        let e: Entry = serde_json::from_value(v)
            .map_err(|err| format!("tensor {name}: header entry does not parse ({err})"))?;
        let size = element_bytes(&e.dtype).ok_or_else(|| {
            format!(
                "tensor {name} is {}; a checkpoint holds F32, F16 or BF16",
                e.dtype
            )
        })?;
        let (begin, end) = e.data_offsets;
        if begin > end {
            return Err(format!(
                "tensor {name}: data offsets {begin}..{end} run backwards; corrupt?"
            ));
        }
        if end > data_len {
            return Err(format!(
                "tensor {name}: data bytes {begin}..{end} lie past the end of the data ({data_len} bytes); is it truncated?"
            ));
        }
        let want = e
            .shape
            .iter()
            .try_fold(size, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| format!("tensor {name}: shape {:?} is too large", e.shape))?;
        if want != end - begin {
            return Err(format!(
                "tensor {name}: shape {:?} of {} needs {want} bytes, but its offsets {begin}..{end} hold {}",
                e.shape,
                e.dtype,
                end - begin
            ));
        }
        spans.push((begin, end, name));
    }
    // The data is the tensors back to back, in offset order.
    spans.sort();
    let mut at = (0, "the start of the data".to_string());
    for (begin, end, name) in spans {
        if begin != at.0 {
            return Err(format!(
                "tensor {name}: data offsets {begin}..{end} {} {} (at byte {}); corrupt?",
                if begin < at.0 {
                    "overlap"
                } else {
                    "leave a gap after"
                },
                at.1,
                at.0
            ));
        }
        at = (end, format!("tensor {name}"));
    }
    if at.0 != data_len {
        return Err(format!(
            "{} bytes of data follow the last tensor; corrupt?",
            data_len - at.0
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A safetensors file of `header` (JSON) and `data` bytes.
    fn file(header: &serde_json::Value, data: usize) -> Vec<u8> {
        let h = header.to_string().into_bytes();
        let mut b = (h.len() as u64).to_le_bytes().to_vec();
        b.extend(h);
        b.extend(vec![0u8; data]);
        b
    }

    fn two(a: (u64, u64), b_dtype: &str, b: (u64, u64), b_shape: &[u64]) -> serde_json::Value {
        serde_json::json!({
            "__metadata__": {"slim.format": "x"},
            "a": {"dtype": "F32", "shape": [2], "data_offsets": [a.0, a.1]},
            "b": {"dtype": b_dtype, "shape": b_shape, "data_offsets": [b.0, b.1]},
        })
    }

    #[test]
    fn each_fault_names_its_tensor_and_what_is_wrong() {
        check(&file(&two((0, 8), "F32", (8, 16), &[2]), 16)).unwrap();
        let cases: [(Vec<u8>, &str); 8] = [
            (vec![1, 2, 3], "shorter than a safetensors header"),
            (
                file(&two((0, 8), "F32", (8, 16), &[2]), 12),
                "tensor b: data bytes 8..16 lie past the end of the data (12 bytes); is it truncated?",
            ),
            (
                file(&two((0, 8), "F32", (8, 16), &[3]), 16),
                "tensor b: shape [3] of F32 needs 12 bytes, but its offsets 8..16 hold 8",
            ),
            (
                file(&two((0, 8), "I64", (8, 16), &[1]), 16),
                "tensor b is I64; a checkpoint holds F32, F16 or BF16",
            ),
            (
                file(&two((0, 8), "F32", (4, 12), &[2]), 16),
                "tensor b: data offsets 4..12 overlap tensor a",
            ),
            (
                file(&two((0, 8), "F32", (12, 20), &[2]), 20),
                "tensor b: data offsets 12..20 leave a gap after tensor a",
            ),
            (
                file(&two((0, 8), "F32", (16, 8), &[2]), 16),
                "tensor b: data offsets 16..8 run backwards",
            ),
            (
                file(&two((0, 8), "F32", (8, 16), &[2]), 20),
                "4 bytes of data follow the last tensor",
            ),
        ];
        for (bytes, want) in cases {
            let err = check(&bytes).unwrap_err();
            assert!(err.contains(want), "{want:?} not in: {err}");
            assert_eq!(
                err.contains("truncated"),
                want.contains("truncated") || want.contains("shorter"),
                "{err}"
            );
        }
        let mut huge = file(&two((0, 8), "F32", (8, 16), &[2]), 16);
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(check(&huge).unwrap_err().contains("header length"));
    }
}
