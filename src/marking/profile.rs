//! The CJSM profile: the vocabulary the milter reads when the config leaves it out. UK
//! Government Security Classifications with their legacy and commercial equivalents, the
//! Australian PSPF levels, and the words around them. The config holds only what a file says
//! (`None` for a list it leaves out); [`complete`] fills in the rest.

use crate::config::{LevelConfig, MarkingConfig};

fn level(name: &str, rank: u32, spellings: &[&str]) -> LevelConfig {
    LevelConfig {
        name: name.into(),
        rank,
        spellings: spellings.iter().map(|s| s.to_string()).collect(),
    }
}

/// The levels, lowest first, with their other spellings.
pub fn cjsm_levels() -> Vec<LevelConfig> {
    vec![
        level(
            "OFFICIAL",
            10,
            &[
                "UNCLASSIFIED",
                "NOT PROTECTIVELY MARKED",
                "PROTECT",
                "UNOFFICIAL",
            ],
        ),
        level(
            "OFFICIAL-SENSITIVE",
            20,
            &[
                "RESTRICTED",
                // OFFICIAL-SENSITIVE's own word, standing apart (`[SENSITIVE] OFFICIAL: …`).
                "SENSITIVE",
                "PRIVATE",
                "PRIVATE AND CONFIDENTIAL",
                "STRICTLY PRIVATE AND CONFIDENTIAL",
                "COMMERCIAL IN CONFIDENCE",
                "COMPANY CONFIDENTIAL",
                "COMMERCIALLY CONFIDENTIAL",
                "STRICTLY CONFIDENTIAL",
                // Legal professional privilege: the confidentiality of legal practice, not
                // the government classification CONFIDENTIAL.
                "LEGALLY PRIVILEGED",
                "PRIVILEGED AND CONFIDENTIAL",
                "PRIVILEGED & CONFIDENTIAL",
                "CONFIDENTIAL AND PRIVILEGED",
                "CONFIDENTIAL & PRIVILEGED",
                "CONFIDENTIAL AND LEGALLY PRIVILEGED",
                "LEGALLY PRIVILEGED AND CONFIDENTIAL",
            ],
        ),
        level("CONFIDENTIAL", 30, &[]),
        level("PROTECTED", 35, &[]),
        level("SECRET", 40, &[]),
        level("TOP SECRET", 50, &[]),
    ]
}

/// Words that may follow a marking: `OFFICIAL-SENSITIVE [PERSONAL]`. Not SENSITIVE:
/// "OFFICIAL [SENSITIVE]" is OFFICIAL-SENSITIVE, never OFFICIAL.
pub const DESCRIPTORS: &[&str] = &["PERSONAL", "COMMERCIAL", "LOCSEN"];

/// Labels of a body line that states the marking: `Classification: OFFICIAL`.
pub const LINE_LABELS: &[&str] = &[
    "Classification",
    "Protective Marking",
    "Security Classification",
    "Security Marking",
    "Marking",
];

/// Everyday wording that resembles a marking but is none: `SECRET SANTA`.
pub const EVERYDAY_PHRASES: &[&str] = &[
    "SECRET SANTA",
    "SECRET BALLOT",
    "SECRET RECORDING",
    "SECRET RECORDINGS",
    "SECRET SERVICE",
    "SECRET INTELLIGENCE SERVICE",
    "TRADE SECRET",
    "TRADE SECRETS",
    "SECRET COMMISSION",
    "SECRET COMMISSIONS",
    "SECRET TRUST",
    "SECRET TRUSTS",
    "SECRET PROFIT",
    "SECRET PROFITS",
    "SECRET CAMERA",
    "SECRET CAMERAS",
    "PROTECTED DISCLOSURE",
    "PROTECTED DISCLOSURES",
    "PROTECTED CHARACTERISTIC",
    "PROTECTED CHARACTERISTICS",
    "PROTECTED PARTY",
    "PROTECTED PARTIES",
    "PROTECTED PERSON",
    "PROTECTED PERSONS",
    "PROTECTED WITNESS",
    "PROTECTED WITNESSES",
    "PROTECTED CONVERSATION",
    "PROTECTED CONVERSATIONS",
    "PROTECTED TENANCY",
    "PROTECTED TENANT",
    "PROTECTED TENANTS",
    "PROTECTED SHORTHOLD",
    "PROTECTED TRUST DEED",
    "PROTECTED ADULT",
    "PROTECTED ADULTS",
    "PROTECTED CHILD",
    "PROTECTED CHILDREN",
    "PROTECTED MATERIAL",
    "PROTECTED VICTIM",
    "PROTECTED VICTIMS",
    "PROTECTED SPECIES",
    // Words one letter away from a marking.
    "PROJECTED",
    "PROTESTED",
    "PROTECTEE",
    "PROTECTEES",
    "PROTECTOR",
    "SECRETE",
    "SECRETED",
    "SECRETT",
];

/// Words that make CONFIDENTIAL next to them the confidentiality of legal and commercial
/// practice: `PRIVATE & CONFIDENTIAL`.
pub const CONFIDENTIAL_QUALIFIERS: &[&str] = &[
    "PRIVATE",
    "PERSONAL",
    "PRIVILEGED",
    "PRIVILEGE",
    "LEGALLY",
    "LEGAL",
    "PREJUDICE",
    "HIGHLY",
    "STRICTLY",
    "COMMERCIAL",
    "COMMERCIALLY",
    "COMPANY",
    "BUSINESS",
    "CLIENT",
    "SOLICITOR",
    "ATTORNEY",
    "ATTORNEYS",
    "ADDRESSEE",
    "MEDICAL",
    "STAFF",
    "WASTE",
    "NON",
    "NOT",
    "LPP",
    "CONTRACT",
    "SETTLEMENT",
    "SENSITIVE",
    "HUMAN",
    "SOURCE",
    "MARAC",
    "MAPPA",
];

/// The marking settings with the profile's list wherever the config gives none.
pub fn complete(config: &MarkingConfig) -> MarkingConfig {
    let or_profile = |given: &Option<Vec<String>>, profile: &[&str]| {
        Some(
            given
                .clone()
                .unwrap_or_else(|| profile.iter().map(|s| s.to_string()).collect()),
        )
    };
    MarkingConfig {
        levels: Some(config.levels.clone().unwrap_or_else(cjsm_levels)),
        descriptors: or_profile(&config.descriptors, DESCRIPTORS),
        line_labels: or_profile(&config.line_labels, LINE_LABELS),
        everyday_phrases: or_profile(&config.everyday_phrases, EVERYDAY_PHRASES),
        confidential_qualifiers: or_profile(
            &config.confidential_qualifiers,
            CONFIDENTIAL_QUALIFIERS,
        ),
        ..config.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_fills_only_what_the_config_leaves_out() {
        let mut config = MarkingConfig {
            descriptors: Some(Vec::new()),
            ..MarkingConfig::default()
        };
        config.line_labels = Some(vec!["Label".into()]);
        let complete = complete(&config);
        // An empty list in the file is the operator's choice, not a gap.
        assert_eq!(complete.descriptors, Some(Vec::new()));
        assert_eq!(complete.line_labels, Some(vec!["Label".to_string()]));
        assert_eq!(complete.levels, Some(cjsm_levels()));
        assert_eq!(
            complete.everyday_phrases.unwrap().len(),
            EVERYDAY_PHRASES.len()
        );
        assert_eq!(complete.ceiling, config.ceiling);
    }
}
