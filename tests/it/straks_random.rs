//! Generated straks deliveries with schema errors placed at random, sent in random layouts (one line, indented,
//! mixed): each finansbilag's verdict must agree with xmllint's on that finansbilag alone, and each error must
//! point at its own element in what was sent.

use std::process::Command;

use crate::common::delivery::{new_id, Bilag, Delivery, Posting};
use crate::common::*;

/// A small deterministic generator (xorshift), so that a failure can be repeated from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The ways a finansbilag is broken against the schema; each edits the lines of one finansbilag.
const BREAKS: &[&str] =
    &["long text", "long id", "unknown element", "out of order", "bad amount", "eleven dimensions", "no posting id", "bad date"];

/// Breaks the finansbilag whose lines are `lines` (one element a line, as the builder writes them).
fn break_bilag(lines: &mut Vec<String>, how: &str, rng: &mut Rng) {
    let find_all = |lines: &Vec<String>, prefix: &str| -> Vec<usize> {
        lines.iter().enumerate().filter(|(_, l)| l.starts_with(prefix)).map(|(i, _)| i).collect()
    };
    let pick = |lines: &Vec<String>, prefix: &str, rng: &mut Rng| -> usize {
        let all = find_all(lines, prefix);
        all[rng.below(all.len())]
    };
    match how {
        "long text" => {
            let at = pick(lines, "<Bilagsdato>", rng);
            lines.insert(at + 1, format!("<Bilagstekst>{}</Bilagstekst>", "æ".repeat(201)));
        }
        "long id" => {
            let at = pick(lines, "<BilagId>", rng);
            lines[at] = format!("<BilagId>{}</BilagId>", "L".repeat(51));
        }
        "unknown element" => {
            let at = pick(lines, "<Beloeb>", rng);
            lines.insert(at + 1, "<Ukendt>x</Ukendt>".into());
        }
        "out of order" => {
            let at = pick(lines, "<Beloeb>", rng);
            lines.swap(at, at + 1);
        }
        "bad amount" => {
            let at = pick(lines, "<Beloeb>", rng);
            lines[at] = "<Beloeb>12,50</Beloeb>".into();
        }
        "eleven dimensions" => {
            let at = pick(lines, "</Kontering>", rng);
            for i in 0..11 {
                lines.insert(at, format!("<Dimension><Navn>D{i}</Navn><Vaerdi>v</Vaerdi></Dimension>"));
            }
        }
        "no posting id" => {
            let at = pick(lines, "<PosteringId>", rng);
            lines.remove(at);
        }
        "bad date" => {
            let at = pick(lines, "<Bilagsdato>", rng);
            lines[at] = "<Bilagsdato>2026-13-40</Bilagsdato>".into();
        }
        other => unreachable!("{other}"),
    }
}

/// Joins lines as one layout: all on one line, indented, or a mix of both at random.
fn lay_out(lines: &[String], layout: usize, rng: &mut Rng) -> String {
    match layout {
        0 => lines.concat(),
        1 => lines.iter().map(|l| format!("    {l}\n")).collect(),
        _ => lines
            .iter()
            .map(|l| match rng.below(3) {
                0 => l.clone(),
                1 => format!("{l}\n"),
                _ => format!("\n  \t{l}"),
            })
            .collect(),
    }
}

fn xmllint_accepts(document: &str, dir: &std::path::Path) -> bool {
    let file = dir.join(format!("{}.xml", new_id()));
    std::fs::write(&file, document).unwrap();
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(repo("schemas/sf1590a.xsd"))
        .arg(&file)
        .output()
        .expect("xmllint is installed");
    out.status.success()
}

/// The byte offset of a 1-based line and column (in characters).
fn offset_of(text: &str, line: u32, col: u32) -> usize {
    let start: usize = text.split_inclusive('\n').take(line as usize - 1).map(str::len).sum();
    start + text[start..].chars().take(col as usize - 1).map(char::len_utf8).sum::<usize>()
}

#[test]
fn each_finansbilag_is_judged_as_xmllint_judges_it_alone_in_any_layout() {
    let seed: u64 = std::env::var("FKOEKO_RANDOM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_f00d_2026);
    let mut rng = Rng(seed);
    let app = TestApp::start();
    let scratch = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for round in 0..40 {
        let bilag: Vec<Bilag> = (0..1 + rng.below(4))
            .map(|_| {
                let mut b = Bilag::balanced(&new_id(), "75.00");
                // Now and then a second pair of postings.
                if rng.below(2) == 0 {
                    b.postings.push(Posting::debit(3, "10.00"));
                    b.postings.push(Posting::credit(4, "10.00"));
                }
                b
            })
            .collect();
        let delivery = Delivery::new(bilag);
        let lines: Vec<String> = delivery.body().lines().map(str::to_string).collect();
        // Split into the delivery's own lines and one block of lines per finansbilag.
        let first = lines.iter().position(|l| l == "<Finansbilag>").unwrap();
        let head: Vec<String> = lines[..first].to_vec();
        let mut items: Vec<Vec<String>> = Vec::new();
        for line in &lines[first..lines.len() - 1] {
            if line == "<Finansbilag>" {
                items.push(Vec::new());
            }
            items.last_mut().unwrap().push(line.clone());
        }
        let mut broken = Vec::new();
        for item in &mut items {
            let how = (rng.below(2) == 0).then(|| BREAKS[rng.below(BREAKS.len())]);
            if let Some(how) = how {
                break_bilag(item, how, &mut rng);
            }
            broken.push(how);
        }
        let layout = rng.below(3);
        let mut all = head.clone();
        all.extend(items.iter().flatten().cloned());
        all.push("</ModtagFinansbilag>".into());
        let body = lay_out(&all, layout, &mut rng);
        let soap = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body>{body}</soap:Body></soap:Envelope>");
        let set = app.send(&soap);
        assert_eq!(set.receipts.len(), items.len(), "round {round} (seed {seed})");
        for (i, (item, receipt)) in items.iter().zip(&set.receipts).enumerate() {
            let mut alone = head.clone();
            alone.extend(item.iter().cloned());
            alone.push("</ModtagFinansbilag>".into());
            let valid = xmllint_accepts(&alone.join("\n"), scratch.path());
            let ours: Vec<_> = receipt.errors.iter().filter(|e| e.code.as_str() == "FORMAT_XSD").collect();
            let context = format!("round {round}, finansbilag {} ({:?}), layout {layout}, seed {seed}: {receipt:?}", i + 1, broken[i]);
            assert_eq!(ours.is_empty(), valid, "xmllint and the adapter disagree: {context}");
            assert_eq!(receipt.status.as_str() == "Accepteret", valid, "{context}");
            for error in ours {
                let path = error.path.as_deref().unwrap_or_default();
                assert!(path.starts_with(&format!("/ModtagFinansbilag/Finansbilag[{}]", i + 1)), "{path}: {context}");
                // The position is that of the element the path names, in the bytes that were sent.
                let name = path.rsplit('/').next().unwrap().split('[').next().unwrap();
                // libxml2 names the element its message is about: the one the path and position point at.
                let named = error.text.split("Element '").nth(1).and_then(|rest| rest.split('\'').next());
                assert_eq!(named, Some(name), "{}: {context}", error.text);
                let at = offset_of(&soap, error.line.unwrap(), error.col.unwrap());
                assert!(
                    soap[at..].starts_with(&format!("<{name}")),
                    "{path} at {:?}:{:?} shows {:?}: {context}",
                    error.line,
                    error.col,
                    &soap[at..at + 30]
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 60, "{checked} finansbilag checked");
}
