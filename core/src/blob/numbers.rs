//! Numeric arrays between the SQL layer and blob values: a PostgreSQL array (C order, a shape)
//! becomes the NumPy array DataJoint would pack, and a numeric blob array becomes doubles.

use ndarray::{ArrayD, IxDyn};

use super::value::{Array, BlobValue};
use crate::OasError;

/// The elements of a PostgreSQL array in its (row-major) order, by element type.
pub enum Numbers {
    Bool(Vec<bool>),
    Int16(Vec<i16>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Float32(Vec<f32>),
    Float64(Vec<f64>),
}

/// The NumPy array of `shape` holding `numbers` (bool, int16/32/64, float32/64), as a blob value.
pub fn array_value(shape: &[usize], numbers: Numbers) -> Result<BlobValue, OasError> {
    fn make<T>(shape: &[usize], v: Vec<T>) -> Result<ArrayD<T>, OasError> {
        ArrayD::from_shape_vec(IxDyn(shape), v).map_err(|e| {
            OasError::invalid_argument(format!(
                "array of shape {shape:?} does not fit its elements: {e}"
            ))
        })
    }
    Ok(BlobValue::Array(match numbers {
        Numbers::Bool(v) => Array::Bool(make(shape, v)?),
        Numbers::Int16(v) => Array::Int16(make(shape, v)?),
        Numbers::Int32(v) => Array::Int32(make(shape, v)?),
        Numbers::Int64(v) => Array::Int64(make(shape, v)?),
        Numbers::Float32(v) => Array::Float32(make(shape, v)?),
        Numbers::Float64(v) => Array::Float64(make(shape, v)?),
    }))
}

/// A numeric or boolean blob array (a 0-d one too) as doubles in row-major order, with its
/// shape. Integers beyond 2^53 in magnitude are refused rather than rounded; complex, datetime
/// and object arrays, and values that are not arrays, are refused.
pub fn array_doubles(value: &BlobValue) -> Result<(Vec<f64>, Vec<usize>), OasError> {
    const EXACT: u64 = 1 << 53;
    let BlobValue::Array(a) = value else {
        return Err(OasError::invalid_argument_hint(
            "the blob holds no numeric array",
            "read it as JSON with oas_blob_unpack",
        ));
    };
    let wide = |ok: bool, v: &dyn std::fmt::Display| {
        if ok {
            Ok(())
        } else {
            Err(OasError::invalid_argument(format!(
                "{v} is beyond 2^53 and cannot be a double exactly"
            )))
        }
    };
    let shape = a.shape().to_vec();
    let values: Vec<f64> = match a {
        Array::Bool(x) => x.iter().map(|&b| f64::from(u8::from(b))).collect(),
        Array::Int8(x) => x.iter().map(|&v| f64::from(v)).collect(),
        Array::UInt8(x) => x.iter().map(|&v| f64::from(v)).collect(),
        Array::Int16(x) => x.iter().map(|&v| f64::from(v)).collect(),
        Array::UInt16(x) => x.iter().map(|&v| f64::from(v)).collect(),
        Array::Int32(x) => x.iter().map(|&v| f64::from(v)).collect(),
        Array::UInt32(x) => x.iter().map(|&v| f64::from(v)).collect(),
        Array::Float32(x) => x.iter().map(|&v| f64::from(v)).collect(),
        Array::Float64(x) => x.iter().copied().collect(),
        Array::Int64(x) => x
            .iter()
            .map(|&v| wide(v.unsigned_abs() <= EXACT, &v).map(|()| v as f64))
            .collect::<Result<_, _>>()?,
        Array::UInt64(x) => x
            .iter()
            .map(|&v| wide(v <= EXACT, &v).map(|()| v as f64))
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(OasError::invalid_argument_hint(
                "the blob's array is not numeric (complex, datetime64 or object)",
                "read it as JSON with oas_blob_unpack",
            ))
        }
    };
    Ok((values, shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_in_and_doubles_out() {
        let v = array_value(&[2, 3], Numbers::Int16(vec![1, 2, 3, 4, 5, 6])).unwrap();
        // blob.pack(np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int16)) round-trips through unpack.
        let back = super::super::unpack(&super::super::pack(&v).unwrap()).unwrap();
        assert_eq!(back, v);
        assert_eq!(
            array_doubles(&v).unwrap(),
            (vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], vec![2, 3])
        );
        assert!(array_value(&[2, 2], Numbers::Float64(vec![1.0])).is_err());
        let big = array_value(&[1], Numbers::Int64(vec![(1 << 53) + 1])).unwrap();
        assert!(array_doubles(&big).is_err());
        let edge = array_value(&[2], Numbers::Int64(vec![1 << 53, -(1 << 53)])).unwrap();
        assert!(array_doubles(&edge).is_ok());
        assert!(array_doubles(&BlobValue::Str("x".into())).is_err());
    }
}
