DROP TABLE erp_claim_parties;
DROP TABLE erp_debtor_data;
DROP TABLE erp_claims;
DROP TABLE erp_debtors;
DROP TABLE sortiment_fordringstyper;
