//! The terminal's view of what the web page shows: `fkoeko deliveries` and `fkoeko mappings`. Same queries,
//! same lookups; only the output differs.

use std::collections::HashMap;
use std::fmt::Write;

use crate::domain::mapping::{KonteringInput, MappingErrors, MappingSet};
use crate::storage::inspect::{Booked, DeliveryDetail, DeliverySummary};

/// The deliveries, and the error codes each got (by delivery id).
pub fn delivery_list(rows: &[DeliverySummary], codes_of: &HashMap<i32, Vec<String>>) -> String {
    let mut out = format!(
        "{:>6}  {:<19}  {:<36}  {:<8}  {:<6}  {:<36}  {:>5}  {:>5}  {:<16}  codes\n",
        "id", "received (UTC)", "leverance_id", "integr.", "via", "sender", "acc.", "rej.", "mapping"
    );
    for row in rows {
        let _ = writeln!(
            out,
            "{:>6}  {:<19}  {:<36}  {:<8}  {:<6}  {:<36}  {:>5}  {:>5}  {:<16}  {}",
            row.id,
            row.received_at.format("%Y-%m-%d %H:%M:%S"),
            row.leverance_id.as_deref().unwrap_or("(not readable)"),
            row.integration,
            row.transport,
            row.sender.as_deref().unwrap_or("-"),
            row.accepted,
            row.rejected,
            row.mapping_version.as_deref().unwrap_or("-"),
            codes_of.get(&row.id).map(|c| c.join(",")).unwrap_or_default(),
        );
    }
    let _ = writeln!(out, "{} deliver{}", rows.len(), if rows.len() == 1 { "y" } else { "ies" });
    out
}

pub fn delivery(detail: &DeliveryDetail) -> String {
    let s = &detail.summary;
    let mut out = String::new();
    let _ = writeln!(out, "Delivery {} (id {})", s.leverance_id.as_deref().unwrap_or("(not readable)"), s.id);
    let _ = writeln!(
        out,
        "  received   {} UTC, {} via {}{}",
        s.received_at.format("%Y-%m-%d %H:%M:%S"),
        s.integration,
        s.transport,
        detail.file_name.as_deref().map(|f| format!(", file {f}")).unwrap_or_default()
    );
    if let Some(t) = &detail.receipt_transfer {
        use crate::storage::text::Named as _;
        let error = t.last_error.as_deref().map(|e| format!(", last error: {e}")).unwrap_or_default();
        let _ = writeln!(
            out,
            "  receipt    {} {} after {} tr{}{error}",
            t.receipt_name,
            t.state.name(),
            t.attempts,
            if t.attempts == 1 { "y" } else { "ies" }
        );
    }
    let _ = writeln!(out, "  sender     {}", s.sender.as_deref().unwrap_or("-"));
    let c = &detail.context;
    for (label, value) in [
        ("TransactionUUID", &c.transaction_uuid),
        ("UserSystemUUID", &c.user_system_uuid),
        ("MunicipalityCVR", &c.municipality_cvr),
        ("CallersServiceCallIdentifier", &c.call_identifier),
        ("AccountingInfo", &c.accounting_info),
    ] {
        if let Some(value) = value {
            let _ = writeln!(out, "  context    {label} {value}");
        }
    }
    let _ = writeln!(out, "  mapping    {}", s.mapping_version.as_deref().unwrap_or("-"));
    let _ = writeln!(out, "  accepted   {}, rejected {}", s.accepted, s.rejected);
    if detail.items.len() < detail.items_total {
        let _ = writeln!(out, "  (the first {} of {} receipts, in the delivery's order)", detail.items.len(), detail.items_total);
    }
    for item in &detail.items {
        let r = &item.receipt;
        let _ = writeln!(out, "\n{}: {} (KvitteringId {})", r.reference, r.status.as_str(), r.id);
        for e in &r.errors {
            let at = match (e.line, e.col) {
                (Some(line), Some(col)) => format!(" line {line}, column {col}"),
                (Some(line), None) => format!(" line {line}"),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "  {} at {}{}: {}{}",
                e.code.as_str(),
                e.path.as_deref().unwrap_or("-"),
                at,
                e.text,
                e.value.as_deref().map(|v| format!(" (value: {v})")).unwrap_or_default()
            );
        }
        match &item.booked {
            Some(Booked::Journal { journal_id, mapping_version, status, lines }) => {
                let _ = writeln!(out, "  booked as erp_journal {journal_id} ({status}), mapping {mapping_version}");
                for l in lines {
                    let _ = writeln!(
                        out,
                        "    line {:>3}  posting {:<6}  {}/{}/{} -> account {}  {} {} {}  by {}",
                        l.line_no, l.posting_id, l.funktion, l.dranst, l.art, l.account, l.amount, l.debit_credit, l.dimensions, l.rule
                    );
                }
            }
            Some(Booked::Claim { claim_id, claim_type, account, principal, rules, mapping_version, status, parties }) => {
                let _ = writeln!(out, "  taken over as erp_claims {claim_id} ({status}), mapping {mapping_version}: type {claim_type}, account {}, principal {principal}, by {rules}",
                    account.as_deref().unwrap_or("-"));
                for p in parties {
                    let _ = writeln!(
                        out,
                        "    {} {} {} {}: {}",
                        p.role,
                        p.identifier_type,
                        p.identifier,
                        p.name,
                        p.erp_debtor_number.as_deref().map_or("new debtor".to_string(), |n| format!("ERP debtor {n}"))
                    );
                }
            }
            None => {}
        }
    }
    out
}

pub fn mapping_errors(errors: &MappingErrors) -> String {
    let mut out = String::new();
    for e in &errors.0 {
        let _ = writeln!(out, "{e}");
    }
    let _ = writeln!(out, "{} error(s); these files would not be taken into use", errors.0.len());
    out
}

/// "Try it" for a kontering or a fordringstype; returns the text and whether something mapped it.
pub fn tried(set: &MappingSet, kontering: Option<&KonteringInput>, fordringstype: Option<&str>) -> (String, bool) {
    if let Some(input) = kontering {
        return match set.try_kontering(input) {
            Err(errors) => (format!("the kontering is not valid: {}\n", errors.join("; ")), false),
            Ok(None) => ("no rule maps this kontering (it would be rejected with MAPNING_MANGLER)\n".into(), false),
            Ok(Some(m)) => {
                let dims = m.dimensions.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join(", ");
                (
                    format!(
                        "{} -> account {}{}\n",
                        m.rule,
                        m.account,
                        if dims.is_empty() { String::new() } else { format!(", dimensions {dims}") }
                    ),
                    true,
                )
            }
        };
    }
    let code = fordringstype.unwrap_or_default();
    match set.map_claim_type(code) {
        None => (format!("no row of fordringstyper.csv maps {code}\n"), false),
        Some(t) => (
            format!("{} -> claim type {}{}\n", t.rule, t.claim_type, t.account.map(|a| format!(", account {a}")).unwrap_or_default()),
            true,
        ),
    }
}
