//! Recognising a notebook file damaged by a power loss (§8.8).
//!
//! Files are not fsynced: the log makes a write durable. After a power loss
//! or an OS crash a file the log wrote may read back empty, cut short,
//! zero-filled (its size was recorded, its data never written), or as an
//! older file the log wrote. Each of these is repaired from the log; any
//! other invalid file is a person's, and is left alone.

/// How a file differs from the one the log last wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// Empty, or the start of the file the log wrote.
    Prefix,
    /// The file the log wrote (or its start) with runs of zero bytes.
    ZeroFilled,
    /// Complete, but an older file the log wrote, at that version.
    Older(u64),
}

impl Damage {
    /// Whether the damaged bytes say something the log cannot: anything
    /// but a prefix of what the log wrote is kept aside before the repair.
    pub fn keep_aside(self) -> bool {
        !matches!(self, Damage::Prefix)
    }

    pub fn describe(self) -> String {
        match self {
            Damage::Prefix => "cut short".to_owned(),
            Damage::ZeroFilled => "zero-filled".to_owned(),
            Damage::Older(v) => format!("as written at version {v}"),
        }
    }
}

/// Classifies `bytes` against `latest` (the file the log last wrote) and
/// `older` (the version of an earlier file the log wrote with these bytes'
/// hash, if any). `None`: not damage the log explains.
pub fn classify(bytes: &[u8], latest: &[u8], older: Option<u64>) -> Option<Damage> {
    if latest.starts_with(bytes) {
        return Some(Damage::Prefix);
    }
    let zeros = bytes.contains(&0);
    if zeros && bytes.iter().all(|&b| b == 0) {
        return Some(Damage::ZeroFilled);
    }
    if zeros
        && bytes.len() <= latest.len()
        && bytes.iter().zip(latest).all(|(&b, &l)| b == l || b == 0)
    {
        return Some(Damage::ZeroFilled);
    }
    older.map(Damage::Older)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LATEST: &[u8] = b"{\n \"cells\": [],\n \"nbformat\": 4\n}\n";

    #[test]
    fn empty_and_cut_short_files_are_prefixes() {
        assert_eq!(classify(b"", LATEST, None), Some(Damage::Prefix));
        assert_eq!(classify(&LATEST[..9], LATEST, None), Some(Damage::Prefix));
        assert_eq!(classify(LATEST, LATEST, None), Some(Damage::Prefix));
        assert!(!Damage::Prefix.keep_aside());
    }

    #[test]
    fn zero_runs_in_place_of_data_are_zero_filled() {
        assert_eq!(
            classify(&vec![0; LATEST.len()], LATEST, None),
            Some(Damage::ZeroFilled)
        );
        let mut torn = LATEST.to_vec();
        torn[10..20].fill(0);
        assert_eq!(classify(&torn, LATEST, None), Some(Damage::ZeroFilled));
        assert!(Damage::ZeroFilled.keep_aside());
    }

    #[test]
    fn an_edited_file_is_not_damage_unless_the_log_wrote_it_earlier() {
        let edited = b"{\n \"cells\": [1],\n \"nbformat\": 4\n}\n";
        assert_eq!(classify(edited, LATEST, None), None);
        assert_eq!(classify(edited, LATEST, Some(7)), Some(Damage::Older(7)));
        let mut broken = LATEST.to_vec();
        broken[3] = b'<';
        assert_eq!(classify(&broken, LATEST, None), None);
    }
}
