//! What a delivery and each of its items are, measured against what was written before: new, the same again
//! (answered as the first time, booked nothing), or the same id for other content (DUBLET_AFVIGENDE). Also
//! whether a claim's related claim is there. Storage looks the facts up inside the booking transaction; the
//! decision is made here, from those facts alone.

use super::delivery::{Booking, DeliveryRecord, ItemOutcome, ItemPlan};
use super::rejection::{Finding, Rejection};

/// A delivery written before under the same LeveranceId.
#[derive(Debug, Clone)]
pub struct EarlierDelivery {
    pub request_hash: String,
    /// The receipt set it got, as stored.
    pub response: String,
}

/// How a delivery stands against earlier ones.
#[derive(Debug)]
pub enum DeliveryStanding {
    /// Never seen: it is written.
    New,
    /// The same content under the same LeveranceId: it gets the answer it got then.
    Repeat { response: String },
    /// The LeveranceId was used for other content: every item is rejected with this, and nothing is written.
    Conflict(Finding),
}

/// The delivery's standing, from the delivery written before under its LeveranceId (if any).
pub fn judge_delivery(record: &DeliveryRecord, earlier: Option<EarlierDelivery>) -> DeliveryStanding {
    match (earlier, record.delivery_id) {
        (Some(earlier), _) if earlier.request_hash == record.request_hash => DeliveryStanding::Repeat { response: earlier.response },
        (Some(_), Some(id)) => {
            let id = id.to_string();
            let finding = Finding::new(Rejection::DuplicateDifferent(format!("LeveranceId {id}")), &record.delivery_id_loc).with_value(id);
            DeliveryStanding::Conflict(finding)
        }
        _ => DeliveryStanding::New,
    }
}

/// An item accepted before from the same sender under the same BilagId (FordringId).
#[derive(Debug, Clone)]
pub struct EarlierItem {
    pub content_hash: String,
    /// Its receipt, as stored.
    pub receipt: String,
}

/// What is done with one item.
#[derive(Debug)]
pub enum ItemDecision<'a> {
    /// The same content was accepted before: its first receipt, unchanged; nothing is booked.
    Repeat {
        receipt: String,
    },
    Book(&'a Booking),
    Reject(Vec<Finding>),
}

/// Decides one item from its plan and the facts: what was accepted before under its reference, and (asked only
/// when it matters) whether the claim it names as related has been accepted.
pub fn judge_item<'a, E>(
    plan: &'a ItemPlan,
    earlier: Option<EarlierItem>,
    related_accepted: impl FnOnce(&str) -> Result<bool, E>,
) -> Result<ItemDecision<'a>, E> {
    let mut findings = Vec::new();
    let new = match earlier {
        Some(earlier) if earlier.content_hash == plan.content_hash => return Ok(ItemDecision::Repeat { receipt: earlier.receipt }),
        Some(_) => {
            findings.push(
                Finding::new(Rejection::DuplicateDifferent(plan.reference.clone()), &plan.reference_loc).with_value(plan.reference.clone()),
            );
            false
        }
        None => true,
    };
    if let ItemOutcome::Reject(own) = &plan.outcome {
        findings.extend(own.iter().cloned());
    }
    // A related claim must already be accepted: earlier, or before it in this transaction.
    if let (true, Some(related)) = (new, &plan.related) {
        if !related_accepted(&related.value)? {
            findings.push(Finding::new(Rejection::RelatedUnknown(related.value.clone()), &related.loc).with_value(related.value.clone()));
        }
    }
    Ok(match &plan.outcome {
        ItemOutcome::Accept(booking) if findings.is_empty() => ItemDecision::Book(booking),
        _ => ItemDecision::Reject(findings),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::delivery::Transport;
    use crate::domain::finans::Located;
    use crate::domain::rejection::{Code, Loc};
    use crate::domain::sortiment::Integration;

    fn plan(outcome: ItemOutcome, related: Option<&str>) -> ItemPlan {
        ItemPlan {
            reference: "B-1".into(),
            reference_loc: Loc { path: "/ModtagFinansbilag/Finansbilag[1]/BilagId".into(), line: Some(3), col: Some(5) },
            content_hash: "h1".into(),
            related: related.map(|r| Located { value: r.to_string(), loc: Loc::default() }),
            outcome,
        }
    }

    fn earlier(hash: &str) -> Option<EarlierItem> {
        Some(EarlierItem { content_hash: hash.into(), receipt: "{first}".into() })
    }

    fn codes(decision: &ItemDecision) -> Vec<Code> {
        match decision {
            ItemDecision::Reject(findings) => findings.iter().map(Finding::code).collect(),
            _ => Vec::new(),
        }
    }

    fn never(_: &str) -> Result<bool, ()> {
        panic!("the related claim is not asked for here")
    }

    #[test]
    fn the_same_content_again_is_its_first_receipt_even_when_it_was_rejected_this_time() {
        let rejected = plan(ItemOutcome::Reject(vec![Finding::nowhere(Rejection::TooLarge("x".into()))]), None);
        match judge_item(&rejected, earlier("h1"), never).unwrap() {
            ItemDecision::Repeat { receipt } => assert_eq!(receipt, "{first}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_content_under_an_accepted_reference_is_dublet_afvigende_at_the_reference_before_its_own_errors() {
        let own = Finding::nowhere(Rejection::TooLarge("x".into()));
        let changed = plan(ItemOutcome::Reject(vec![own]), Some("F-0"));
        let decided = judge_item(&changed, earlier("h2"), never).unwrap();
        assert_eq!(codes(&decided), vec![Code::DubletAfvigende, Code::FormatStoerrelse]);
        let ItemDecision::Reject(findings) = decided else { unreachable!() };
        assert_eq!(findings[0].loc.as_ref().and_then(|l| l.line), Some(3));
        assert_eq!(findings[0].value.as_deref(), Some("B-1"));
    }

    #[test]
    fn a_related_claim_is_asked_for_only_when_the_item_is_new_and_rejects_when_it_is_not_there() {
        // A plan rejected for nothing of its own: the related claim alone decides.
        let accept = || ItemOutcome::Reject(Vec::new());
        let mut asked = Vec::new();
        let claim = plan(accept(), Some("F-0"));
        let decided = judge_item(&claim, None, |r| {
            asked.push(r.to_string());
            Ok::<_, ()>(false)
        })
        .unwrap();
        assert_eq!(asked, ["F-0"]);
        assert_eq!(codes(&decided), vec![Code::RegelRelateret]);
        let decided = judge_item(&claim, None, |_| Ok::<_, ()>(true)).unwrap();
        assert!(codes(&decided).is_empty());
    }

    #[test]
    fn a_delivery_is_new_a_repeat_or_a_conflict_by_its_content() {
        let mut record = DeliveryRecord::new(Integration::Sf1590A, Transport::Straks, "h".into());
        record.delivery_id = Some(uuid::Uuid::nil());
        let before = |hash: &str| Some(EarlierDelivery { request_hash: hash.into(), response: "{answer}".into() });
        assert!(matches!(judge_delivery(&record, None), DeliveryStanding::New));
        assert!(matches!(judge_delivery(&record, before("h")), DeliveryStanding::Repeat { response } if response == "{answer}"));
        match judge_delivery(&record, before("other")) {
            DeliveryStanding::Conflict(finding) => assert_eq!(finding.code(), Code::DubletAfvigende),
            other => panic!("{other:?}"),
        }
    }
}
