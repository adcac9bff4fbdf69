//! A delivery as the pipeline decided it, before it is written: what is known of the delivery itself, and the
//! decision on each of its items. Both transports produce these; storage writes them and the receipts come
//! from them.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::finans::{Finansbilag, Located};
use super::fordring::Fordring;
use super::mapping::{Mapped, MappedClaimType};
use super::receipt::{Receipt, ReceiptSet, Stamp};
use super::rejection::{Finding, Loc, Rejection};
use super::sortiment::Integration;
use super::target::TargetRow;

/// How a delivery arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// A synchronous SOAP call: the delivery is the SOAP body.
    Straks,
    /// A batch file: the delivery is the document's root.
    Masse,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Straks => "straks",
            Transport::Masse => "masse",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Transport::Straks, Transport::Masse].into_iter().find(|t| t.as_str() == text)
    }
}

/// What is known about a delivery before it is written.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    pub delivery_id: Option<Uuid>,
    /// Where LeveranceId is in the delivery, for a DUBLET_AFVIGENDE on it.
    pub delivery_id_loc: Loc,
    pub integration: Integration,
    pub transport: Transport,
    pub sender: Option<Uuid>,
    pub authority: Option<String>,
    pub transaction_uuid: Option<String>,
    pub user_system_uuid: Option<String>,
    /// The rest of Serviceplatformen's context, kept as it came: AuthorityContext's MunicipalityCVR, the caller's
    /// own call id and accounting info.
    pub context_authority: Option<String>,
    pub call_identifier: Option<String>,
    pub accounting_info: Option<String>,
    /// A RequestHeader's TransactionUUID from the SOAP header, sent back in the answer's header.
    pub echo_transaction: Option<String>,
    pub request_hash: String,
    pub sortiment_version: Option<i64>,
    pub mapping_version: Option<String>,
    /// The sender's name in the sortiment, for alerts.
    pub sender_name: Option<String>,
    /// When it arrived, for the processing time in the metrics.
    pub arrived: std::time::Instant,
}

impl DeliveryRecord {
    /// What is known before the delivery has been read.
    pub fn new(integration: Integration, transport: Transport, request_hash: String) -> Self {
        DeliveryRecord {
            delivery_id: None,
            delivery_id_loc: Loc::default(),
            integration,
            transport,
            sender: None,
            authority: None,
            transaction_uuid: None,
            user_system_uuid: None,
            context_authority: None,
            call_identifier: None,
            accounting_info: None,
            echo_transaction: None,
            request_hash,
            sortiment_version: None,
            mapping_version: None,
            sender_name: None,
            arrived: std::time::Instant::now(),
        }
    }

    /// The receipt set of this delivery, with `receipts`, processed at `at`. LeveranceId and AfsenderSystem are
    /// the nil UUID when the delivery could not be read that far.
    pub fn receipt_set(&self, at: DateTime<Utc>, receipts: Vec<Receipt>) -> ReceiptSet {
        ReceiptSet::new(self.delivery_id.unwrap_or_default(), self.sender.unwrap_or_default(), Stamp(at), receipts)
    }

    /// Every item named by `references` rejected with `findings`, written nowhere: the delivery could not be
    /// taken in at all (its LeveranceId was used for other content).
    pub fn reject_all(&self, references: impl IntoIterator<Item = String>, findings: &[Finding], at: DateTime<Utc>) -> Vec<Receipt> {
        let delivery_id = self.delivery_id.unwrap_or_default();
        references.into_iter().map(|r| Receipt::rejected(delivery_id, &r, Stamp(at), findings)).collect()
    }

    /// The receipts the delivery would get, without writing anything or looking at earlier deliveries
    /// (`fkoeko validate`, the fuzz target).
    pub fn preview(&self, plans: Vec<ItemPlan>) -> ReceiptSet {
        let at = Utc::now();
        let (delivery_id, stamp) = (self.delivery_id.unwrap_or_default(), Stamp(at));
        let receipts = plans
            .into_iter()
            .map(|plan| match plan.outcome {
                ItemOutcome::Reject(findings) => Receipt::rejected(delivery_id, &plan.reference, stamp, &findings),
                ItemOutcome::Accept(_) => Receipt::accepted(delivery_id, &plan.reference, stamp),
            })
            .collect();
        self.receipt_set(at, receipts)
    }
}

/// The decision on one finansbilag (or fordring), made before the transaction.
#[derive(Debug)]
pub struct ItemPlan {
    pub reference: String,
    /// Where the reference (BilagId) is, for a DUBLET_AFVIGENDE on it.
    pub reference_loc: Loc,
    pub content_hash: String,
    /// A claim's RelateretFordringId: it must name a claim accepted before it, which only the booking
    /// transaction can tell.
    pub related: Option<Located<String>>,
    pub outcome: ItemOutcome,
}

impl ItemPlan {
    /// A delivery that names no items gets one receipt for itself, under this reference.
    pub const WHOLE_DELIVERY: &'static str = "LEVERANCE";

    /// The one plan of a delivery rejected as a whole.
    pub fn whole_delivery(findings: Vec<Finding>) -> Self {
        ItemPlan {
            reference: Self::WHOLE_DELIVERY.into(),
            reference_loc: Loc::default(),
            content_hash: String::new(),
            related: None,
            outcome: ItemOutcome::Reject(findings),
        }
    }

    /// The one plan of a delivery in which no item was found: rejected as a whole with its own errors (an element
    /// where an item should be, in another namespace, is one), and never without a reason: with none, that it
    /// holds no `item` (at `root_path`).
    pub fn without_items(mut findings: Vec<Finding>, item: &str, root_path: &str) -> Self {
        if findings.is_empty() {
            let loc = Loc { path: root_path.to_string(), line: None, col: None };
            findings.push(Finding::new(Rejection::Schema(format!("leverancen indeholder intet {item}")), &loc));
        }
        Self::whole_delivery(findings)
    }

    /// What it books, when it is accepted.
    pub fn booking(&self) -> Option<&Booking> {
        match &self.outcome {
            ItemOutcome::Accept(booking) => Some(booking),
            ItemOutcome::Reject(_) => None,
        }
    }
}

#[derive(Debug)]
pub enum ItemOutcome {
    /// Boxed: a booking holds the whole item, a rejection only its findings.
    Accept(Box<Booking>),
    Reject(Vec<Finding>),
}

// Always boxed (in ItemOutcome), so the size difference of the variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Booking {
    Finans(FinansBooking),
    Claim(ClaimBooking),
}

/// An accepted finansbilag and, per postering in order, its mapping.
#[derive(Debug)]
pub struct FinansBooking {
    pub bilag: Finansbilag,
    pub mapped: Vec<Mapped>,
    pub mapping_version: String,
    /// Its rows for the ERP's own import tables (a target profile's table targets), keys still open.
    pub rows: Vec<TargetRow>,
}

/// An accepted claim, its ERP claim type and (when there is one) its revenue account.
#[derive(Debug)]
pub struct ClaimBooking {
    pub fordring: Fordring,
    pub claim_type: MappedClaimType,
    pub account: Option<Mapped>,
    pub mapping_version: String,
    /// As a finansbilag's.
    pub rows: Vec<TargetRow>,
}
