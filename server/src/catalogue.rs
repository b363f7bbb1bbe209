//! The recording catalogue of Article 27 ¶2 (音像记录清单): which kind of record
//! each enforcement activity needs — `continuous-av` (uninterrupted audio-video
//! of the whole process), `av` (audio-video) or `text` — with names in Chinese
//! and English. Each enforcement body compiles and publishes its own; the
//! default here follows the article's own lists, and a body replaces it with
//! a TOML file (`catalogue.toml` in the data folder).
//!
//! Pure data and checks: no file is read here (the caller passes the text).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// What Article 27 asks of an activity's record.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Requirement {
    /// 全过程无间断音像记录: one unbroken run of media covers it from start to end.
    ContinuousAv,
    /// 音像记录: audio-video exists within it.
    Av,
    /// 文字记录: a text record is enough.
    Text,
}

impl Requirement {
    /// The name used in the catalogue and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Requirement::ContinuousAv => "continuous-av",
            Requirement::Av => "av",
            Requirement::Text => "text",
        }
    }

    /// Does this requirement call for audio-video at all?
    pub fn needs_media(self) -> bool {
        self != Requirement::Text
    }
}

/// One activity type of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivityType {
    /// Stable id, as devices tag recordings with it (`--activity seizure`):
    /// lowercase ASCII letters, digits and `-`.
    pub id: String,
    /// What its record must be.
    pub requirement: Requirement,
    /// Name in Chinese.
    pub name_zh: String,
    /// Name in English.
    pub name_en: String,
    /// Where the requirement comes from, for people reading the catalogue.
    #[serde(default)]
    pub basis: String,
}

/// The catalogue: every activity type an enforcement body records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    /// The enforcement body that publishes it.
    #[serde(default)]
    pub body: String,
    /// Its activity types, in the order they are listed.
    #[serde(rename = "activity")]
    pub types: Vec<ActivityType>,
}

/// Why a catalogue is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogueError {
    /// Not TOML of the expected shape (the message names the line and field).
    #[error("catalogue: {0}")]
    Parse(#[from] toml::de::Error),
    /// An id that is empty, too long or has characters other than `a-z 0-9 -`.
    #[error("catalogue: activity id {0:?} must be 1 to 40 of a-z, 0-9 and -")]
    BadId(String),
    /// The same id twice.
    #[error("catalogue: activity id {0:?} is listed twice")]
    Duplicate(String),
    /// A name left empty.
    #[error("catalogue: activity {0:?} needs both name_zh and name_en")]
    MissingName(String),
    /// No activity type at all.
    #[error("catalogue: no activity types")]
    Empty,
}

/// The longest activity id: ids travel in signed entries, where the agent
/// bounds tags too.
pub const MAX_ID_LEN: usize = 40;

fn t(id: &str, requirement: Requirement, zh: &str, en: &str, basis: &str) -> ActivityType {
    ActivityType {
        id: id.into(),
        requirement,
        name_zh: zh.into(),
        name_en: en.into(),
        basis: basis.into(),
    }
}

impl Catalogue {
    /// The catalogue that Article 27 itself implies: its ¶1 list for
    /// uninterrupted recording, its ¶2 list for audio-video, and text for the
    /// other steps of the whole process (启动、审核、决定).
    pub fn article_27() -> Catalogue {
        use Requirement::{Av, ContinuousAv, Text};
        let cont = "Art. 27: 全过程无间断音像记录";
        let av = "Art. 27: 容易引发争议的行政执法过程，应当进行音像记录";
        let text = "Art. 27: 可以采取文字记录";
        Catalogue {
            body: String::new(),
            types: vec![
                t("seizure", ContinuousAv, "查封扣押财产", "Seizure and detention of property", cont),
                t("demolition", ContinuousAv, "强制拆除", "Forced demolition", cont),
                t(
                    "coercive-enforcement",
                    ContinuousAv,
                    "直接涉及人身自由、生命健康、重大财产权益的现场执法",
                    "On-site enforcement directly affecting personal freedom, life and health or major property rights",
                    cont,
                ),
                t("case-premises", ContinuousAv, "执法办案场所", "Case-handling premises", cont),
                t("on-site-enforcement", Av, "现场执法", "On-site enforcement", av),
                t("evidence-collection", Av, "调查取证", "Investigation and evidence collection", av),
                t("hearing", Av, "举行听证", "Hearing", av),
                t("service-by-leaving", Av, "留置送达", "Service by leaving documents", av),
                t("service-by-notice", Av, "公告送达", "Service by public notice", av),
                t("filing", Text, "立案（启动）", "Opening of the case", text),
                t("legal-review", Text, "法制审核", "Legal review", text),
                t("decision", Text, "决定", "Decision", text),
                t("other", Text, "其他执法环节", "Other enforcement steps", text),
            ],
        }
    }

    /// Read and check a catalogue file's text.
    ///
    /// # Errors
    /// [`CatalogueError`] naming what is wrong.
    pub fn from_toml(text: &str) -> Result<Catalogue, CatalogueError> {
        let c: Catalogue = toml::from_str(text)?;
        c.check()?;
        Ok(c)
    }

    /// The catalogue as a TOML file.
    ///
    /// # Panics
    /// Never: every field serialises.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a catalogue serialises")
    }

    /// Check ids and names.
    ///
    /// # Errors
    /// The first problem found.
    pub fn check(&self) -> Result<(), CatalogueError> {
        if self.types.is_empty() {
            return Err(CatalogueError::Empty);
        }
        let mut seen = BTreeSet::new();
        for a in &self.types {
            if !valid_id(&a.id) {
                return Err(CatalogueError::BadId(a.id.clone()));
            }
            if !seen.insert(a.id.as_str()) {
                return Err(CatalogueError::Duplicate(a.id.clone()));
            }
            if a.name_zh.trim().is_empty() || a.name_en.trim().is_empty() {
                return Err(CatalogueError::MissingName(a.id.clone()));
            }
        }
        Ok(())
    }

    /// The activity type with this id.
    pub fn get(&self, id: &str) -> Option<&ActivityType> {
        self.types.iter().find(|a| a.id == id)
    }
}

/// Is `id` a valid activity id?
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_article_27_catalogue_lists_both_paragraphs() {
        let c = Catalogue::article_27();
        c.check().unwrap();
        let req = |id: &str| c.get(id).unwrap().requirement;
        for id in [
            "seizure",
            "demolition",
            "coercive-enforcement",
            "case-premises",
        ] {
            assert_eq!(req(id), Requirement::ContinuousAv, "{id}");
        }
        for id in [
            "on-site-enforcement",
            "evidence-collection",
            "hearing",
            "service-by-leaving",
            "service-by-notice",
        ] {
            assert_eq!(req(id), Requirement::Av, "{id}");
        }
        assert_eq!(req("decision"), Requirement::Text);
    }

    #[test]
    fn a_catalogue_file_round_trips_and_bad_ones_are_named() {
        let c = Catalogue::article_27();
        assert_eq!(Catalogue::from_toml(&c.to_toml()).unwrap(), c);
        let one = |id: &str, zh: &str| {
            format!("[[activity]]\nid = \"{id}\"\nrequirement = \"av\"\nname_zh = \"{zh}\"\nname_en = \"x\"\n")
        };
        assert!(matches!(
            Catalogue::from_toml(&one("Seizure", "查封")),
            Err(CatalogueError::BadId(_))
        ));
        assert!(matches!(
            Catalogue::from_toml(&format!("{}{}", one("a", "甲"), one("a", "乙"))),
            Err(CatalogueError::Duplicate(_))
        ));
        assert!(matches!(
            Catalogue::from_toml(&one("a", " ")),
            Err(CatalogueError::MissingName(_))
        ));
        assert!(matches!(
            Catalogue::from_toml("body = \"x\"\nactivity = []\n"),
            Err(CatalogueError::Empty)
        ));
        let e = Catalogue::from_toml(&one("a", "甲").replace("\"av\"", "\"video\"")).unwrap_err();
        assert!(e.to_string().contains("requirement"), "{e}");
        let e = Catalogue::from_toml(&format!("{}colour = 1\n", one("a", "甲"))).unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
    }
}
