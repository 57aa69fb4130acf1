//! Record encoding for redb values: one version byte, then postcard. Every table value goes
//! through here so that a future format change is a version bump in one place.

use serde::{de::DeserializeOwned, Serialize};

use super::StorageError;

/// The version byte written in front of every record.
pub const RECORD_VERSION: u8 = 1;

/// Encodes a record.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StorageError> {
    let mut out = vec![RECORD_VERSION];
    let body = postcard::to_allocvec(value).map_err(StorageError::Codec)?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes a record, refusing unknown versions rather than misreading them.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StorageError> {
    match bytes.split_first() {
        Some((&RECORD_VERSION, body)) => postcard::from_bytes(body).map_err(StorageError::Codec),
        Some((v, _)) => Err(StorageError::Malformed(format!(
            "unknown record version {v}"
        ))),
        None => Err(StorageError::Malformed("empty record".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        id: u64,
        name: String,
        flag: bool,
        opt: Option<i64>,
        list: Vec<String>,
    }

    proptest! {
        #[test]
        fn roundtrip(id: u64, name in ".{0,40}", flag: bool, opt: Option<i64>,
                     list in proptest::collection::vec(".{0,8}", 0..5)) {
            let s = Sample { id, name, flag, opt, list };
            let bytes = encode(&s).unwrap();
            prop_assert_eq!(bytes[0], RECORD_VERSION);
            prop_assert_eq!(decode::<Sample>(&bytes).unwrap(), s);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode::<Sample>(&bytes);
        }
    }

    #[test]
    fn unknown_version_is_refused() {
        let mut b = encode(&1u32).unwrap();
        b[0] = 9;
        assert!(decode::<u32>(&b).is_err());
        assert!(decode::<u32>(&[]).is_err());
    }
}
