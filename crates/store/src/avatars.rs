//! Whose avatar is which picture (XEP-0084, XEP-0153). The pictures themselves live in
//! a cache directory named by their SHA-1; here is only the contact → hash mapping.

use rusqlite::params;

use crate::db::Db;
use crate::Result;

impl Db {
    /// Every known avatar of an account: (bare JID, SHA-1 hex).
    pub fn avatars(&mut self, account_id: i64) -> Result<Vec<(String, String)>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT jid, hash FROM avatar WHERE account_id = ?1")?;
        let rows = st.query_map([account_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Records `jid`'s avatar; `None` removes it.
    pub fn set_avatar(&mut self, account_id: i64, jid: &str, hash: Option<&str>) -> Result<()> {
        match hash {
            Some(hash) => self.conn.execute(
                "INSERT INTO avatar (account_id, jid, hash) VALUES (?1, ?2, ?3)
                 ON CONFLICT (account_id, jid) DO UPDATE SET hash = excluded.hash",
                params![account_id, jid, hash],
            )?,
            None => self.conn.execute(
                "DELETE FROM avatar WHERE account_id = ?1 AND jid = ?2",
                params![account_id, jid],
            )?,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::db::{Account, Db};

    #[test]
    fn set_replace_remove() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(&dir.path().join("t.db")).unwrap();
        let id = db
            .upsert_account(&Account {
                jid: "a@example.org".into(),
                resource: "r".into(),
                enabled: true,
                ..Default::default()
            })
            .unwrap();
        db.set_avatar(id, "b@example.org", Some("aa")).unwrap();
        db.set_avatar(id, "b@example.org", Some("bb")).unwrap();
        db.set_avatar(id, "c@example.org", Some("cc")).unwrap();
        let mut all = db.avatars(id).unwrap();
        all.sort();
        assert_eq!(
            all,
            vec![
                ("b@example.org".to_string(), "bb".to_string()),
                ("c@example.org".to_string(), "cc".to_string())
            ]
        );
        db.set_avatar(id, "b@example.org", None).unwrap();
        assert_eq!(
            db.avatars(id).unwrap(),
            vec![("c@example.org".to_string(), "cc".to_string())]
        );
    }
}
