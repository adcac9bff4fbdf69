//! A real SOAP client (Python's zeep, from PyPI) against the running server: it reads the served WSDLs and
//! schemas, sends finansbilag and a claim, and reads the receipts' fields.

use std::process::Command;

use crate::common::*;

#[test]
fn zeep_sends_finansbilag_and_claims_through_the_served_wsdls() {
    let app = TestApp::start();
    let out = Command::new("python3").arg(repo("tests/soap_client/zeep_client.py")).arg(app.url("")).output().expect("python3 runs");
    assert!(out.status.success(), "zeep client failed (pip install zeep):\n{}", String::from_utf8_lossy(&out.stderr));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON from the client");

    for (case, reference) in [("soap11_accepted", "ZEEP-1"), ("soap12_accepted", "ZEEP-3")] {
        let answer = &result[case];
        assert_eq!(answer["AfsenderSystem"], KY, "{case}");
        let receipt = &answer["receipts"][0];
        assert_eq!(receipt["Reference"], reference, "{case}");
        assert_eq!(receipt["Status"], "Accepteret", "{case}");
        assert!(receipt["ErpReference"].as_str().unwrap().starts_with("erp_journal:"), "{case}");
        assert_eq!(receipt["Fejl"].as_array().unwrap().len(), 0);
    }
    let rejected = &result["soap11_rejected"]["receipts"][0];
    assert_eq!(rejected["Status"], "Afvist");
    assert_eq!(rejected["Fejl"][0]["Kode"], "REGEL_BALANCE");
    assert_eq!(rejected["Fejl"][0]["Sti"], "/ModtagFinansbilag/Finansbilag[1]");
    assert!(rejected["Fejl"][0]["Tekst"].as_str().unwrap().contains("balancerer ikke"));

    let claim = &result["claim_accepted"]["receipts"][0];
    assert_eq!(claim["Reference"], "ZEEP-F-1");
    assert_eq!(claim["Status"], "Accepteret", "{claim}");
    assert!(claim["ErpReference"].as_str().unwrap().starts_with("erp_claims:"));
    assert_eq!(app.count("SELECT count(*) AS n FROM erp_claims WHERE principal = '1999.95'"), 1);
    assert_eq!(app.count("SELECT count(*) AS n FROM erp_claim_parties"), 2);

    assert_eq!(app.count("SELECT count(*) AS n FROM erp_journal"), 2);
    assert_eq!(app.count("SELECT count(*) AS n FROM erp_journal_lines WHERE amount = '310.75'"), 4);
}
