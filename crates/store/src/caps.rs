//! The XEP-0115 caps cache: `ver` → the features its disco#info listed (verified by the
//! session before it is stored, so one answer serves every entity announcing it).

use rusqlite::params;

use crate::db::Db;
use crate::Result;

impl Db {
    /// Every cached `ver` with its features.
    pub fn caps(&mut self) -> Result<Vec<(String, Vec<String>)>> {
        let mut st = self.conn.prepare_cached("SELECT ver, features FROM caps")?;
        let rows = st.query_map([], |r| {
            let features: String = r.get(1)?;
            Ok((
                r.get(0)?,
                features
                    .split('\n')
                    .filter(|f| !f.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Caches `ver`'s features (a feature never holds a line break: the session refuses
    /// those).
    pub fn add_caps(&mut self, ver: &str, features: &[String]) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO caps (ver, features) VALUES (?1, ?2)",
            params![ver, features.join("\n")],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::db::Db;

    #[test]
    fn caps_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(&dir.path().join("t.db")).unwrap();
        assert!(db.caps().unwrap().is_empty());
        let f = vec!["urn:xmpp:ping".to_string(), "urn:xmpp:jingle:1".to_string()];
        db.add_caps("abc=", &f).unwrap();
        db.add_caps("abc=", &f).unwrap();
        assert_eq!(db.caps().unwrap(), vec![("abc=".to_string(), f)]);
    }
}
