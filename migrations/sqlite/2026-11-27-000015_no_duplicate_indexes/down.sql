CREATE INDEX erp_journal_lines_by_journal ON erp_journal_lines (journal_id);
CREATE INDEX erp_claim_parties_by_claim ON erp_claim_parties (claim_id);
