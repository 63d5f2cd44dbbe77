//! Markings in label headers: `X-Protective-Marking` (Australian PSPF), `msip_labels`
//! (Microsoft Purview) and `SIO-Label` (RFC 7444). Each takes the unfolded value.
//!
//! Labels are structured, so a level counts in any case. A value read exactly may lower; a
//! value that only resembles a level (`SEC="SECRET"`, `SEC=SECRET AUSTEO`, a Purview `Name`
//! with a suffix) counts as that level but never lowers. A parameter given twice is read
//! twice: the highest wins.

use super::normalize::fold;
use super::resemble::{self, Mode};
use super::subject::key_values;
#[cfg(test)]
use super::vocab::LevelId;
use super::vocab::Vocabulary;
use super::{Found, max_reading};
use std::collections::HashMap;

/// What a label header said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelResult {
    Level(Found),
    /// The header states a marking we cannot map; reported as a warning.
    Unrecognised(String),
}

/// The reading of one label value: exact (may lower) or resembling (never lowers).
pub(super) fn value_reading(value: &str, vocab: &Vocabulary) -> Option<Found> {
    let value = value.trim();
    let exact = vocab.whole_marking(value).map(Found::plain);
    let unquoted = value.trim_matches(['"', '\'']);
    // Anywhere in the value, any case: `UK TOP SECRET`, `Classified - Secret`, `SECRET AUSTEO`.
    let anywhere = |text: &str, mode| {
        let tokens = resemble::tokens(text, mode, 32);
        resemble::highest_in(vocab, &tokens, mode, |_, _, _| true)
    };
    let generous = anywhere(&fold(unquoted), Mode::Resemble)
        .map(|level| Found::checked(vocab, level, || anywhere(unquoted, Mode::Exact)));
    max_reading(vocab, [exact, generous])
}

/// `VER=2018.4, NS=gov.au, SEC=OFFICIAL:Sensitive, ACCESS=Legal-Privilege, ORIGIN=…`
pub fn x_protective_marking(value: &str, vocab: &Vocabulary) -> Option<LabelResult> {
    let mut seen = None;
    let mut best: Option<Found> = None;
    for (_, sec) in key_values(value, &[',', ';'])
        .filter(|(k, _)| k.eq_ignore_ascii_case("SEC") || k.eq_ignore_ascii_case("DLM"))
    {
        seen.get_or_insert(sec);
        best = max_reading(vocab, [best, value_reading(sec, vocab)]);
    }
    let sec = seen?;
    Some(match best {
        Some(found) => LabelResult::Level(found),
        None => LabelResult::Unrecognised(format!("X-Protective-Marking SEC={}", clip(sec))),
    })
}

/// `MSIP_Label_<guid>_Enabled=true; MSIP_Label_<guid>_Name=…; …` — possibly several labels.
/// A label is read through `[marking.msip_labels]` by its GUID, or else by its `Name` when
/// that names or resembles a level of the vocabulary (`SECRET - Internal`).
pub fn msip_labels(value: &str, vocab: &Vocabulary) -> Vec<LabelResult> {
    struct Label<'v> {
        guid: &'v str,
        enabled: bool,
        name: Option<&'v str>,
        by_name: Option<Found>,
    }
    let mut labels: Vec<Label> = Vec::new();
    // GUID (lower case) -> index: linear in the header, however many labels it holds.
    let mut index_of: HashMap<String, usize> = HashMap::new();
    for (key, val) in key_values(value, &[';']) {
        let Some(rest) = key
            .get(..11)
            .filter(|p| p.eq_ignore_ascii_case("MSIP_Label_"))
            .map(|_| &key[11..])
        else {
            continue;
        };
        let Some((guid, field)) = rest.rsplit_once('_') else {
            continue;
        };
        let index = *index_of
            .entry(guid.to_ascii_lowercase())
            .or_insert_with(|| {
                labels.push(Label {
                    guid,
                    enabled: false,
                    name: None,
                    by_name: None,
                });
                labels.len() - 1
            });
        let label = &mut labels[index];
        if field.eq_ignore_ascii_case("Enabled") {
            // Said twice, enabled once is enabled.
            label.enabled |= val.eq_ignore_ascii_case("true");
        } else if field.eq_ignore_ascii_case("Name") {
            label.name.get_or_insert(val);
            label.by_name = max_reading(vocab, [label.by_name, value_reading(val, vocab)]);
        }
    }
    labels
        .iter()
        .filter(|l| l.enabled)
        .map(|l| {
            // A GUID mapped in the config is read as mapped: the tenant's administrator says
            // what its label means (Microsoft's default "Confidential" label is no government
            // CONFIDENTIAL). An unmapped GUID is read by its Name.
            let reading = match vocab.msip_level(l.guid) {
                Some(level) => Some(Found::plain(level)),
                None => l.by_name,
            };
            match reading {
                Some(found) => LabelResult::Level(found),
                None => LabelResult::Unrecognised(format!(
                    "msip_labels label {} (Name={}) is not in [marking.msip_labels]",
                    clip(l.guid),
                    clip(l.name.unwrap_or("?"))
                )),
            }
        })
        .collect()
}

/// `marking="OFFICIAL-SENSITIVE PERSONAL"; fgcolor=black; bgcolor=yellow; type=":ess"; label=…`
pub fn sio_label(value: &str, vocab: &Vocabulary) -> Option<LabelResult> {
    let params = sio_parameters(value);
    let mut markings = params
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("marking"))
        .map(|(_, v)| v.as_str())
        .peekable();
    let first = *markings.peek()?;
    let best = markings.fold(None, |best, marking| {
        max_reading(vocab, [best, value_reading(marking, vocab)])
    });
    Some(match best {
        Some(found) => LabelResult::Level(found),
        None => LabelResult::Unrecognised(format!("SIO-Label marking={}", clip(first))),
    })
}

/// The level a label names, for callers that want only that.
#[cfg(test)]
fn level_of(result: &LabelResult) -> Option<LevelId> {
    match result {
        LabelResult::Level(found) => Some(found.level),
        LabelResult::Unrecognised(_) => None,
    }
}

/// RFC 7444 parameters: `name=value` or `name="quoted \" value"`, separated by `;`.
fn sio_parameters(value: &str) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ';').is_some() {}
        let name: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if name.trim().is_empty() {
            break;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut val = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => val.extend(chars.next()),
                    c => val.push(c),
                }
            }
            while chars.next_if(|&c| c != ';').is_some() {}
        } else {
            while let Some(c) = chars.next_if(|&c| c != ';') {
                val.push(c);
            }
        }
        params.push((name.trim().to_string(), val.trim().to_string()));
    }
    params
}

/// RFC 2047 encoded words in a label value (which the parser keeps raw), decoded: an encoded
/// label is still a label.
pub fn decode_words(value: &str) -> String {
    if !value.contains("=?") {
        return value.to_string();
    }
    let header = format!("Subject: {value}\r\n\r\n");
    mail_parser::MessageParser::default()
        .parse(header.as_bytes())
        .and_then(|m| m.subject().map(str::to_string))
        .unwrap_or_else(|| value.to_string())
}

/// Values quoted in warnings are cut short: they come from the sender.
fn clip(text: &str) -> String {
    let mut clipped: String = text.chars().take(80).filter(|c| !c.is_control()).collect();
    if text.chars().count() > 80 {
        clipped.push('…');
    }
    clipped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MarkingConfig;

    fn vocab() -> Vocabulary {
        let mut config = MarkingConfig::default();
        config.msip_labels.insert(
            "1F3B4A2C-0000-4000-8000-00000000000A".into(),
            "OFFICIAL-SENSITIVE".into(),
        );
        Vocabulary::from_config(&config).unwrap()
    }

    fn level_name(v: &Vocabulary, r: Option<LabelResult>) -> String {
        match r {
            Some(r @ LabelResult::Level(_)) => v.level(level_of(&r).unwrap()).name.clone(),
            Some(LabelResult::Unrecognised(why)) => format!("?{why}"),
            None => "-".into(),
        }
    }

    #[test]
    fn x_protective_marking_table() {
        let v = vocab();
        let cases = [
            (
                "VER=2018.4, NS=gov.au, SEC=OFFICIAL:Sensitive, ACCESS=Legal-Privilege, ORIGIN=a@b.gov.au",
                "OFFICIAL-SENSITIVE",
            ),
            (
                "VER=2018.4, NS=gov.au,\r\n SEC=SECRET, CAVEAT=SH:CABINET",
                "SECRET",
            ),
            ("VER=2018.4, NS=gov.au, SEC=UNOFFICIAL", "OFFICIAL"),
            ("VER=2018.4, NS=gov.au, SEC=TOP-SECRET", "TOP SECRET"),
            ("VER=2018.4,NS=gov.au,SEC=PROTECTED", "PROTECTED"),
            ("sec=official", "OFFICIAL"),
            ("VER=2018.4, NS=gov.au", "-"),
            ("SEC=BANANA", "?X-Protective-Marking SEC=BANANA"),
            ("", "-"),
        ];
        for (value, want) in cases {
            assert_eq!(
                level_name(&v, x_protective_marking(value, &v)),
                want,
                "{value:?}"
            );
        }
    }

    #[test]
    fn msip_labels_table() {
        let v = vocab();
        let mapped = "MSIP_Label_1f3b4a2c-0000-4000-8000-00000000000a_Enabled=true; \
             MSIP_Label_1f3b4a2c-0000-4000-8000-00000000000a_SetDate=2024-01-01T00:00:00Z; \
             MSIP_Label_1f3b4a2c-0000-4000-8000-00000000000a_Method=Standard; \
             MSIP_Label_1f3b4a2c-0000-4000-8000-00000000000a_Name=Sensitive Stuff; \
             MSIP_Label_1f3b4a2c-0000-4000-8000-00000000000a_SiteId=abc;";
        let results = msip_labels(mapped, &v);
        assert_eq!(results.len(), 1);
        assert_eq!(
            level_name(&v, results.into_iter().next()),
            "OFFICIAL-SENSITIVE"
        );

        let by_name = "MSIP_Label_99999999-1111-2222-3333-444444444444_Enabled=True;\
             MSIP_Label_99999999-1111-2222-3333-444444444444_Name=SECRET";
        assert_eq!(level_name(&v, msip_labels(by_name, &v).pop()), "SECRET");

        let disabled = "MSIP_Label_99999999-1111-2222-3333-444444444444_Enabled=false;\
             MSIP_Label_99999999-1111-2222-3333-444444444444_Name=SECRET";
        assert!(msip_labels(disabled, &v).is_empty());

        let unknown = "MSIP_Label_abc_Enabled=true; MSIP_Label_abc_Name=General";
        assert!(
            level_name(&v, msip_labels(unknown, &v).pop()).starts_with("?msip_labels label abc")
        );

        assert!(msip_labels("garbage;;;=;MSIP_Label_=", &v).is_empty());

        // A mapped GUID is read as mapped, whatever its Name; an unmapped one by its Name,
        // which counts when it resembles a level (a suffix, a typo), the highest if given twice.
        let mapped_confidential = "MSIP_Label_1f3b4a2c-0000-4000-8000-00000000000a_Enabled=true; \
             MSIP_Label_1f3b4a2c-0000-4000-8000-00000000000a_Name=Confidential";
        assert_eq!(
            level_name(&v, msip_labels(mapped_confidential, &v).pop()),
            "OFFICIAL-SENSITIVE"
        );
        for (name, want) in [
            ("SECRET - UK Eyes Only", "SECRET"),
            ("Secert", "SECRET"),
            ("OFFICIAL; MSIP_Label_abc_Name=TOP SECRET", "TOP SECRET"),
        ] {
            let value = format!("MSIP_Label_abc_Enabled=true; MSIP_Label_abc_Name={name}");
            assert_eq!(
                level_name(&v, msip_labels(&value, &v).pop()),
                want,
                "{name}"
            );
        }
        // Many labels: linear, not quadratic, in the header.
        let many: String = (0..20_000)
            .map(|i| format!("MSIP_Label_{i:08x}_Enabled=true; MSIP_Label_{i:08x}_Name=General; "))
            .collect();
        assert_eq!(msip_labels(&many, &v).len(), 20_000);
    }

    #[test]
    fn sio_label_table() {
        let v = vocab();
        let cases = [
            (
                r#"marking="OFFICIAL-SENSITIVE PERSONAL"; fgcolor=black; bgcolor=yellow; type=":ess"; label=MQYGASkCAQM="#,
                "OFFICIAL-SENSITIVE",
            ),
            (r#"marking="SECRET REL TO USA"; type=":x411""#, "SECRET"),
            (r#"type=":ess"; marking=CONFIDENTIAL"#, "CONFIDENTIAL"),
            (r#"marking="say \"hi\"""#, "?SIO-Label marking=say \"hi\""),
            (r#"fgcolor=black"#, "-"),
            (r#"marking=""#, "?SIO-Label marking="),
        ];
        for (value, want) in cases {
            assert_eq!(level_name(&v, sio_label(value, &v)), want, "{value:?}");
        }
    }
}
