//! The marking vocabulary (levels, spellings, descriptors) and the matcher that finds a
//! spelling at a position in a text.

use super::profile;
use crate::config::{ConfigError, ConfigErrorKind, LevelConfig, MarkingConfig};
use std::collections::HashMap;

/// Index of a level in [`Vocabulary::levels`].
pub type LevelId = usize;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Level {
    pub name: String,
    pub rank: u32,
}

#[derive(Clone, Debug)]
pub(super) struct Spelling {
    /// Upper-case words; in the text they may be joined by spaces, `-`, `:` or `_`.
    pub words: Vec<String>,
    /// The words as the generous reader compares them (`normalize::canonical_words`).
    pub canon: Vec<String>,
    pub level: LevelId,
}

/// A spelling found in a text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Match {
    pub level: LevelId,
    /// Byte offset just past the match.
    pub end: usize,
    /// The first word stands in capitals in the text (`SECRET`, not `Secret`).
    pub capitals: bool,
}

#[derive(Clone, Debug)]
pub struct Vocabulary {
    pub levels: Vec<Level>,
    spellings: Vec<Spelling>,
    descriptors: Vec<String>,
    line_labels: Vec<Vec<String>>,
    line_labels_canon: Vec<Vec<String>>,
    /// Everyday wording that resembles a marking but is none (`SECRET SANTA`): the words,
    /// and the words as the generous reader compares them.
    everyday: Vec<Vec<String>>,
    everyday_canon: Vec<Vec<String>>,
    /// For each character, the spellings (indices) whose first word has it first or second:
    /// as the generous reader compares words, and as written. A word within one edit of a
    /// first word shares one of its first two characters with that word's first two.
    index_resemble: HashMap<char, Vec<usize>>,
    index_exact: HashMap<char, Vec<usize>>,
    /// The level CONFIDENTIAL, when the vocabulary has it, and the words that qualify it as
    /// legal or commercial confidentiality (upper case).
    confidential: Option<LevelId>,
    confidential_qualifiers: Vec<String>,
    msip_labels: HashMap<String, LevelId>,
    pub ceiling: LevelId,
    pub secure_from: LevelId,
    pub default: LevelId,
}

fn words_of(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_uppercase())
        .collect()
}

impl Vocabulary {
    /// Builds the vocabulary, from the CJSM profile wherever the config gives no list; an
    /// error names the config key at fault and why.
    pub fn from_config(config: &MarkingConfig) -> Result<Vocabulary, ConfigError> {
        let config = &profile::complete(config);
        let mut levels: Vec<LevelConfig> = config.levels.clone().unwrap_or_default();
        for extra in &config.extra_levels {
            match levels
                .iter_mut()
                .find(|l| l.name.eq_ignore_ascii_case(&extra.name))
            {
                Some(known) => known.spellings.extend(extra.spellings.iter().cloned()),
                None => levels.push(extra.clone()),
            }
        }
        if levels.is_empty() {
            return Err(ConfigError::at("marking.levels", ConfigErrorKind::NoLevels));
        }
        let mut vocab = Vocabulary {
            levels: Vec::new(),
            spellings: Vec::new(),
            descriptors: config
                .descriptors
                .iter()
                .flatten()
                .flat_map(|d| words_of(d))
                .collect(),
            line_labels: config
                .line_labels
                .iter()
                .flatten()
                .map(|l| words_of(l))
                .collect(),
            everyday: config
                .everyday_phrases
                .iter()
                .flatten()
                .map(|p| words_of(p))
                .filter(|w| !w.is_empty())
                .collect(),
            everyday_canon: Vec::new(),
            line_labels_canon: Vec::new(),
            index_resemble: HashMap::new(),
            index_exact: HashMap::new(),
            confidential: None,
            confidential_qualifiers: config
                .confidential_qualifiers
                .iter()
                .flatten()
                .map(|q| q.to_uppercase())
                .collect(),
            msip_labels: HashMap::new(),
            ceiling: 0,
            secure_from: 0,
            default: 0,
        };
        vocab.line_labels_canon = vocab
            .line_labels
            .iter()
            .map(|w| super::normalize::canonical_words(w))
            .collect();
        vocab.everyday_canon = vocab
            .everyday
            .iter()
            .map(|w| super::normalize::canonical_words(w))
            .collect();
        let mut owner: HashMap<Vec<String>, String> = HashMap::new();
        for level in &levels {
            if words_of(&level.name).is_empty() {
                return Err(ConfigError::at(
                    "marking.levels",
                    ConfigErrorKind::LevelWithoutLetters(level.name.clone()),
                ));
            }
            if let Some(other) = vocab.levels.iter().find(|l| l.rank == level.rank) {
                return Err(ConfigError::at(
                    "marking.levels",
                    ConfigErrorKind::SharedRank {
                        first: other.name.clone(),
                        second: level.name.clone(),
                        rank: level.rank,
                    },
                ));
            }
            let id = vocab.levels.len();
            vocab.levels.push(Level {
                name: level.name.clone(),
                rank: level.rank,
            });
            for spelling in std::iter::once(&level.name).chain(&level.spellings) {
                let words = words_of(spelling);
                if words.is_empty() {
                    return Err(ConfigError::at(
                        "marking.levels",
                        ConfigErrorKind::SpellingWithoutLetters {
                            spelling: spelling.clone(),
                            level: level.name.clone(),
                        },
                    ));
                }
                if let Some(previous) = owner.insert(words.clone(), level.name.clone())
                    && previous != level.name
                {
                    return Err(ConfigError::at(
                        "marking.levels",
                        ConfigErrorKind::SpellingOfTwoLevels {
                            spelling: spelling.clone(),
                            first: previous,
                            second: level.name.clone(),
                        },
                    ));
                }
                let canon = super::normalize::canonical_words(&words);
                vocab.spellings.push(Spelling {
                    words,
                    canon,
                    level: id,
                });
            }
        }
        // By first word (the generous reader compares a word with each first word once), then
        // longest first. (The strict matcher takes the longest match whatever the order.)
        vocab.spellings.sort_by(|a, b| {
            a.canon[0].cmp(&b.canon[0]).then_with(|| {
                let length = |s: &Spelling| s.words.iter().map(|w| w.len() + 1).sum::<usize>();
                length(b).cmp(&length(a))
            })
        });
        for (at, spelling) in vocab.spellings.iter().enumerate() {
            for (index, word) in [
                (&mut vocab.index_resemble, &spelling.canon[0]),
                (&mut vocab.index_exact, &spelling.words[0]),
            ] {
                let mut firsts: Vec<char> = word.chars().take(2).collect();
                firsts.dedup();
                for c in firsts {
                    index.entry(c).or_default().push(at);
                }
            }
        }
        vocab.confidential = vocab.level_by_name("", "CONFIDENTIAL").ok();
        vocab.ceiling = vocab.level_by_name("marking.ceiling", &config.ceiling)?;
        vocab.secure_from = vocab.level_by_name("marking.secure_from", &config.secure_from)?;
        vocab.default = vocab.level_by_name("marking.default", &config.default)?;
        if vocab.levels[vocab.secure_from].rank > vocab.levels[vocab.ceiling].rank {
            return Err(ConfigError::at(
                "marking.secure_from",
                ConfigErrorKind::SecureFromAboveCeiling,
            ));
        }
        for (guid, name) in &config.msip_labels {
            let id = vocab.level_by_name(&format!("marking.msip_labels.{guid}"), name)?;
            vocab.msip_labels.insert(guid.to_ascii_lowercase(), id);
        }
        Ok(vocab)
    }

    /// The level called `name` (any spelling of its words); the error names `key`.
    pub fn level_by_name(&self, key: &str, name: &str) -> Result<LevelId, ConfigError> {
        let words = words_of(name);
        self.levels
            .iter()
            .position(|l| words_of(&l.name) == words)
            .ok_or_else(|| {
                ConfigError::at(
                    key,
                    ConfigErrorKind::UnknownLevel {
                        name: name.into(),
                        known: self.levels.iter().map(|l| l.name.clone()).collect(),
                    },
                )
            })
    }

    pub fn level(&self, id: LevelId) -> &Level {
        &self.levels[id]
    }

    pub fn rank(&self, id: LevelId) -> u32 {
        self.levels[id].rank
    }

    /// A level below the default: reading it lowers a message, so it needs the exact form.
    pub fn is_lowering(&self, id: LevelId) -> bool {
        self.rank(id) < self.rank(self.default)
    }

    /// A level above the ceiling: the service does not carry it.
    pub fn above_ceiling(&self, id: LevelId) -> bool {
        self.rank(id) > self.rank(self.ceiling)
    }

    /// The spellings that may begin at a word starting with `first` and `second` (see
    /// `index_resemble`), in order, each once: the two lists merged, without allocating.
    pub(super) fn candidates(
        &self,
        resemble: bool,
        first: char,
        second: Option<char>,
    ) -> impl Iterator<Item = &Spelling> {
        let index = if resemble {
            &self.index_resemble
        } else {
            &self.index_exact
        };
        let list = |c: Option<char>| -> &[usize] {
            c.and_then(|c| index.get(&c)).map_or(&[], Vec::as_slice)
        };
        let (mut a, mut b) = (
            list(Some(first)).iter().peekable(),
            list(second).iter().peekable(),
        );
        std::iter::from_fn(move || {
            let next = match (a.peek(), b.peek()) {
                (Some(&&x), Some(&&y)) if x == y => {
                    b.next();
                    a.next()
                }
                (Some(&&x), Some(&&y)) => {
                    if x < y {
                        a.next()
                    } else {
                        b.next()
                    }
                }
                (Some(_), None) => a.next(),
                (None, Some(_)) => b.next(),
                (None, None) => None,
            }?;
            Some(&self.spellings[*next])
        })
    }

    /// Everyday phrases: as written, and as the generous reader compares them.
    pub(super) fn everyday(&self) -> (&[Vec<String>], &[Vec<String>]) {
        (&self.everyday, &self.everyday_canon)
    }

    /// For the exact scan: every spelling that keeps or raises the level, its words joined by
    /// a space and by a hyphen, with its level; and the everyday phrases, with none.
    pub(super) fn exact_patterns(&self) -> (Vec<String>, Vec<Option<LevelId>>) {
        let mut patterns = Vec::new();
        let mut levels = Vec::new();
        for spelling in self.spellings.iter().filter(|s| !self.is_lowering(s.level)) {
            for joiner in [" ", "-"] {
                patterns.push(spelling.words.join(joiner));
                levels.push(Some(spelling.level));
            }
        }
        for phrase in &self.everyday {
            patterns.push(phrase.join(" "));
            levels.push(None);
        }
        (patterns, levels)
    }

    /// The level CONFIDENTIAL and its legal and commercial qualifiers.
    pub(super) fn confidential(&self) -> (Option<LevelId>, &[String]) {
        (self.confidential, &self.confidential_qualifiers)
    }

    pub(super) fn descriptor_words(&self) -> &[String] {
        &self.descriptors
    }

    /// Line labels: as written, and as the generous reader compares them.
    pub(super) fn line_label_words(&self) -> (&[Vec<String>], &[Vec<String>]) {
        (&self.line_labels, &self.line_labels_canon)
    }

    pub fn msip_level(&self, guid: &str) -> Option<LevelId> {
        self.msip_labels.get(&guid.to_ascii_lowercase()).copied()
    }

    /// The longest spelling at `start` of `text` that `accept` takes.
    pub fn best_match(
        &self,
        text: &str,
        start: usize,
        accept: impl Fn(&Match, &str) -> bool,
    ) -> Option<Match> {
        let tail = text.get(start..)?;
        let mut best: Option<Match> = None;
        for spelling in &self.spellings {
            if let Some((end, capitals)) = match_words(tail, &spelling.words) {
                let found = Match {
                    level: spelling.level,
                    end: start + end,
                    capitals,
                };
                if best.is_none_or(|b| found.end > b.end) && accept(&found, &text[found.end..]) {
                    best = Some(found);
                }
            }
        }
        best
    }

    /// A whole value that is a marking, optionally followed by descriptors:
    /// `OFFICIAL-SENSITIVE [PERSONAL]`, `OFFICIAL:Sensitive`.
    pub fn whole_marking(&self, text: &str) -> Option<LevelId> {
        let text = text.trim();
        self.best_match(text, 0, |m, rest| self.exact_tail(m, rest))
            .map(|m| m.level)
    }

    /// A marking at the start of a label value, followed by anything after a word boundary
    /// (`SECRET REL TO USA`).
    pub fn leading_marking(&self, text: &str) -> Option<LevelId> {
        let text = text.trim();
        self.best_match(text, 0, |_, _| true).map(|m| m.level)
    }

    /// What may follow a marking in its exact form: descriptors (`OFFICIAL-SENSITIVE
    /// [PERSONAL]`), but after a lowering marking nothing at all: the descriptors belong to
    /// OFFICIAL-SENSITIVE, so `OFFICIAL LOCSEN` is no exact OFFICIAL.
    pub fn exact_tail(&self, m: &Match, rest: &str) -> bool {
        if self.is_lowering(m.level) {
            rest.split(is_descriptor_separator).all(str::is_empty)
        } else {
            self.only_descriptors(rest)
        }
    }

    /// True when `text` holds nothing but descriptors, separators and brackets.
    pub fn only_descriptors(&self, text: &str) -> bool {
        text.split(is_descriptor_separator)
            .filter(|w| !w.is_empty())
            .all(|w| self.descriptors.iter().any(|d| d.eq_ignore_ascii_case(w)))
    }

    /// If `line` starts with a line label (`Protective Marking:`), the text after the colon.
    pub fn after_line_label<'t>(&self, line: &'t str) -> Option<&'t str> {
        self.line_labels.iter().find_map(|label| {
            let (end, _) = match_words(line, label)?;
            line[end..].trim_start().strip_prefix(':')
        })
    }
}

fn is_descriptor_separator(c: char) -> bool {
    c.is_whitespace() || is_dash(c) || ":,;/|[]().".contains(c)
}

/// Separators allowed between the words of a spelling: space, any dash (hyphen, non-breaking
/// hyphen, en and em dash, minus sign, …), and the punctuation people put between the words of
/// a marking (`OFFICIAL: SENSITIVE`, `OFFICIAL/SENSITIVE`, `OFFICIAL (SENSITIVE)`). Generous on
/// purpose: reading `OFFICIAL … SENSITIVE` as OFFICIAL would let sensitive mail out.
fn is_word_separator(c: char) -> bool {
    c.is_whitespace() || is_dash(c) || ":_/.[]()".contains(c)
}

/// Unicode dash punctuation (general category Pd) and the minus signs.
pub fn is_dash(c: char) -> bool {
    matches!(
        c,
        '-' | '\u{2010}'
            ..='\u{2015}'
                | '\u{2212}'
                | '\u{2E3A}'
                | '\u{2E3B}'
                | '\u{FE58}'
                | '\u{FE63}'
                | '\u{FF0D}'
    )
}

/// Matches `words` at the start of `text`, case-insensitively, words joined by one or more
/// separators, the last word ending at a word boundary. Returns (end, first word in capitals).
fn match_words(text: &str, words: &[String]) -> Option<(usize, bool)> {
    let bytes = text.as_bytes();
    let mut pos = 0;
    let mut capitals = false;
    for (index, word) in words.iter().enumerate() {
        if index > 0 {
            let separators = text[pos..]
                .char_indices()
                .find(|&(_, c)| !is_word_separator(c))
                .map_or(text.len() - pos, |(i, _)| i);
            if separators == 0 {
                return None;
            }
            pos += separators;
        }
        let candidate = bytes.get(pos..pos + word.len())?;
        if !candidate.eq_ignore_ascii_case(word.as_bytes()) {
            return None;
        }
        if index == 0 {
            capitals = candidate.iter().all(|b| !b.is_ascii_lowercase());
        }
        pos += word.len();
    }
    // A word boundary: `PROTECT` must not match `PROTECTED`.
    match text.get(pos..)?.chars().next() {
        Some(c) if c.is_alphanumeric() => None,
        _ => Some((pos, capitals)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> Vocabulary {
        Vocabulary::from_config(&MarkingConfig::default()).unwrap()
    }

    fn name(v: &Vocabulary, id: Option<LevelId>) -> Option<&str> {
        id.map(|id| v.level(id).name.as_str())
    }

    #[test]
    fn whole_markings() {
        let v = vocab();
        let cases = [
            ("OFFICIAL", Some("OFFICIAL")),
            ("official-sensitive", Some("OFFICIAL-SENSITIVE")),
            ("OFFICIAL - SENSITIVE", Some("OFFICIAL-SENSITIVE")),
            ("OFFICIAL: SENSITIVE", Some("OFFICIAL-SENSITIVE")),
            ("OFFICIAL:Sensitive", Some("OFFICIAL-SENSITIVE")),
            ("OFFICIAL – SENSITIVE", Some("OFFICIAL-SENSITIVE")),
            ("OFFICIAL\u{2010}SENSITIVE", Some("OFFICIAL-SENSITIVE")),
            ("OFFICIAL\u{2011}SENSITIVE", Some("OFFICIAL-SENSITIVE")),
            ("OFFICIAL\u{2212}SENSITIVE", Some("OFFICIAL-SENSITIVE")),
            ("OFFICIAL/SENSITIVE", Some("OFFICIAL-SENSITIVE")),
            ("OFFICIAL.SENSITIVE", Some("OFFICIAL-SENSITIVE")),
            ("OFFICIAL [SENSITIVE]", Some("OFFICIAL-SENSITIVE")),
            ("OFFICIAL (SENSITIVE)", Some("OFFICIAL-SENSITIVE")),
            ("OFFICIAL (Sensitive)", Some("OFFICIAL-SENSITIVE")),
            // The descriptors belong to OFFICIAL-SENSITIVE: no exact OFFICIAL.
            ("OFFICIAL [PERSONAL]", None),
            ("OFFICIAL-SENSITIVE PERSONAL", Some("OFFICIAL-SENSITIVE")),
            ("OFFICIAL-SENSITIVE [LOCSEN]", Some("OFFICIAL-SENSITIVE")),
            (
                "OFFICIAL SENSITIVE - COMMERCIAL",
                Some("OFFICIAL-SENSITIVE"),
            ),
            ("RESTRICTED", Some("OFFICIAL-SENSITIVE")),
            ("Commercial in Confidence", Some("OFFICIAL-SENSITIVE")),
            ("COMPANY CONFIDENTIAL", Some("OFFICIAL-SENSITIVE")),
            ("CONFIDENTIAL", Some("CONFIDENTIAL")),
            ("NOT PROTECTIVELY MARKED", Some("OFFICIAL")),
            ("UNCLASSIFIED", Some("OFFICIAL")),
            ("PROTECT", Some("OFFICIAL")),
            ("PROTECTED", Some("PROTECTED")),
            ("UNOFFICIAL", Some("OFFICIAL")),
            ("TOP SECRET", Some("TOP SECRET")),
            ("TOP-SECRET", Some("TOP SECRET")),
            ("SECRET", Some("SECRET")),
            ("SECRET weapon", None),
            ("OFFICIALS", None),
            ("TOPSECRET", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(name(&v, v.whole_marking(text)), want, "{text:?}");
        }
    }

    #[test]
    fn capitals_are_reported() {
        let v = vocab();
        let m = v.best_match("Secret Santa", 0, |_, _| true).unwrap();
        assert!(!m.capitals);
        let m = v.best_match("SECRET Santa", 0, |_, _| true).unwrap();
        assert!(m.capitals);
        assert_eq!(m.end, 6);
    }

    #[test]
    fn extra_levels_extend_and_levels_replace() {
        let mut config = MarkingConfig::default();
        config.extra_levels.push(LevelConfig {
            name: "OFFICIAL-SENSITIVE".into(),
            rank: 20,
            spellings: vec!["IN CONFIDENCE".into()],
        });
        config.extra_levels.push(LevelConfig {
            name: "HIGHLY RESTRICTED".into(),
            rank: 60,
            spellings: vec![],
        });
        let v = Vocabulary::from_config(&config).unwrap();
        assert_eq!(
            name(&v, v.whole_marking("In Confidence")),
            Some("OFFICIAL-SENSITIVE")
        );
        // The longer spelling wins over RESTRICTED's.
        assert_eq!(
            name(&v, v.whole_marking("HIGHLY RESTRICTED")),
            Some("HIGHLY RESTRICTED")
        );

        config.levels = Some(vec![
            LevelConfig {
                name: "PUBLIC".into(),
                rank: 1,
                spellings: vec![],
            },
            LevelConfig {
                name: "OFFICIAL-SENSITIVE".into(),
                rank: 2,
                spellings: vec![],
            },
        ]);
        config.extra_levels.clear();
        let v = Vocabulary::from_config(&config).unwrap();
        assert_eq!(name(&v, v.whole_marking("PUBLIC")), Some("PUBLIC"));
        assert_eq!(v.whole_marking("SECRET"), None);
    }

    #[test]
    fn conflicting_vocabulary_is_refused() {
        let mut config = MarkingConfig::default();
        config.extra_levels.push(LevelConfig {
            name: "SECRET".into(),
            rank: 40,
            spellings: vec!["RESTRICTED".into()],
        });
        let err = Vocabulary::from_config(&config).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("marking.levels"));
        assert!(err.to_string().contains("RESTRICTED"), "{err}");

        let mut config = MarkingConfig::default();
        config.extra_levels.push(LevelConfig {
            name: "X".into(),
            rank: 10,
            spellings: vec![],
        });
        assert!(
            Vocabulary::from_config(&config)
                .unwrap_err()
                .to_string()
                .contains("rank")
        );
    }

    #[test]
    fn line_labels() {
        let v = vocab();
        assert_eq!(
            v.after_line_label("Classification: SECRET"),
            Some(" SECRET")
        );
        assert_eq!(v.after_line_label("protective marking : x"), Some(" x"));
        assert_eq!(v.after_line_label("Classifications: x"), None);
    }
}
