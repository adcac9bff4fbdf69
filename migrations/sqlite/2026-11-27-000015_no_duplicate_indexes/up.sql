-- Two indexes repeated what a UNIQUE constraint's index already gives: erp_journal_lines (journal_id, posting_id)
-- and erp_claim_parties (claim_id, position) serve a search by their first column (retention's deletes) as well.
-- Each was written again for every booked line or party: a million extra index entries a batch file of a million
-- posteringer.
DROP INDEX erp_journal_lines_by_journal;
DROP INDEX erp_claim_parties_by_claim;
