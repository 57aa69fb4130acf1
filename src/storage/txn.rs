//! One way for store functions to read inside either kind of transaction, so a lookup is
//! written once and serves both a read-only view and the checks inside a write.

use redb::WriteTransaction;
use redb::{Key, ReadOnlyTable, ReadTransaction, ReadableTable, Table, TableDefinition, Value};

use super::StorageError;

/// A transaction that can open tables for reading: `ReadTransaction` or `WriteTransaction`.
pub trait Reads {
    /// The table handle this transaction gives out.
    type Table<'a, K: Key + 'static, V: Value + 'static>: ReadableTable<K, V>
    where
        Self: 'a;

    /// Opens `def` for reading.
    fn table<'a, K: Key + 'static, V: Value + 'static>(
        &'a self,
        def: TableDefinition<K, V>,
    ) -> Result<Self::Table<'a, K, V>, StorageError>;
}

impl Reads for ReadTransaction {
    type Table<'a, K: Key + 'static, V: Value + 'static> = ReadOnlyTable<K, V>;

    fn table<K: Key + 'static, V: Value + 'static>(
        &self,
        def: TableDefinition<K, V>,
    ) -> Result<ReadOnlyTable<K, V>, StorageError> {
        Ok(self.open_table(def)?)
    }
}

impl Reads for WriteTransaction {
    type Table<'a, K: Key + 'static, V: Value + 'static> = Table<'a, K, V>;

    fn table<'a, K: Key + 'static, V: Value + 'static>(
        &'a self,
        def: TableDefinition<K, V>,
    ) -> Result<Table<'a, K, V>, StorageError> {
        Ok(self.open_table(def)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{tables, Db};

    fn schema_version<R: Reads>(txn: &R) -> Result<bool, StorageError> {
        Ok(txn.table(tables::META)?.get("schema_version")?.is_some())
    }

    #[tokio::test]
    async fn one_lookup_serves_read_and_write_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("pfai.redb")).unwrap();
        assert!(db.read(schema_version).await.unwrap());
        assert!(db.write(schema_version).await.unwrap());
    }
}
