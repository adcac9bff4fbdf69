// @generated automatically by Diesel CLI.

diesel::table! {
    admin_sessions (token_hash) {
        token_hash -> Text,
        user_name -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    admin_users_seen (name) {
        name -> Text,
        role -> Text,
        password_digest -> Text,
    }
}

diesel::table! {
    alert_outbox (id) {
        id -> Integer,
        group_key -> Text,
        afsender_system -> Nullable<Text>,
        recipients -> Text,
        payload -> Text,
        created_at -> Timestamp,
        status -> Text,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        lease_until -> Nullable<Timestamp>,
        claimed_by -> Nullable<Text>,
        last_error -> Nullable<Text>,
        sent_at -> Nullable<Timestamp>,
        message_id -> Nullable<Text>,
    }
}

diesel::table! {
    audit_log (id) {
        id -> Integer,
        at -> Timestamp,
        actor -> Text,
        action -> Text,
        detail -> Text,
        origin -> Nullable<Text>,
    }
}

diesel::table! {
    batch_files (id) {
        id -> Integer,
        file_key -> Text,
        integration -> Text,
        file_name -> Text,
        stored_name -> Text,
        content_hash -> Text,
        size_bytes -> BigInt,
        metadata -> Nullable<Text>,
        state -> Text,
        delivery_id -> Nullable<Integer>,
        leverance_id -> Nullable<Text>,
        afsender_system -> Nullable<Text>,
        items_total -> Nullable<Integer>,
        items_done -> Integer,
        accepted_count -> Integer,
        rejected_count -> Integer,
        claimed_by -> Text,
        lease_until -> Timestamp,
        received_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
        receipt_file -> Nullable<Text>,
        archive_purged_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    batch_receipts (batch_id, position) {
        batch_id -> Integer,
        position -> Integer,
        status -> Text,
        receipt_json -> Text,
    }
}

diesel::table! {
    deliveries (id) {
        id -> Integer,
        leverance_id -> Nullable<Text>,
        integration -> Text,
        transport -> Text,
        afsender_system -> Nullable<Text>,
        myndighed -> Nullable<Text>,
        transaction_uuid -> Nullable<Text>,
        user_system_uuid -> Nullable<Text>,
        request_hash -> Text,
        received_at -> Timestamp,
        sortiment_version_id -> Nullable<Integer>,
        mapping_version -> Nullable<Text>,
        accepted_count -> Integer,
        rejected_count -> Integer,
        response_json -> Text,
        context_municipality_cvr -> Nullable<Text>,
        callers_service_call_identifier -> Nullable<Text>,
        accounting_info -> Nullable<Text>,
        purged_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    erp_claim_parties (id) {
        id -> Integer,
        claim_id -> Integer,
        position -> Integer,
        role -> Text,
        debtor_data_id -> Integer,
        erp_debtor_number -> Nullable<Text>,
        status -> Text,
    }
}

diesel::table! {
    erp_claims (id) {
        id -> Integer,
        kvittering_id -> Text,
        delivery_id -> Integer,
        afsender_system -> Text,
        fordring_id -> Text,
        src_fordringstype -> Text,
        erp_claim_type -> Text,
        principal -> crate::storage::amount::Amount,
        currency -> Text,
        description -> Text,
        period_from -> Nullable<Date>,
        period_to -> Nullable<Date>,
        established -> Date,
        due -> Date,
        last_timely_payment -> Date,
        limitation -> Nullable<Date>,
        related_fordring_id -> Nullable<Text>,
        related_claim_id -> Nullable<Integer>,
        erp_account -> Nullable<Text>,
        erp_dimensions -> Text,
        src_kontering -> Nullable<Text>,
        mapping_rules -> Text,
        mapping_version -> Text,
        created_at -> Timestamp,
        status -> Text,
        picked_up_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    erp_debtor_data (id) {
        id -> Integer,
        identifier_type -> Text,
        identifier -> Text,
        erp_debtor_number -> Nullable<Text>,
        name -> Text,
        street -> Nullable<Text>,
        house_number -> Nullable<Text>,
        floor -> Nullable<Text>,
        door -> Nullable<Text>,
        postcode -> Nullable<Text>,
        city -> Nullable<Text>,
        country -> Nullable<Text>,
        created_at -> Timestamp,
        status -> Text,
        picked_up_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    erp_debtors (identifier_type, identifier) {
        identifier_type -> Text,
        identifier -> Text,
        erp_debtor_number -> Text,
    }
}

diesel::table! {
    erp_journal (id) {
        id -> Integer,
        kvittering_id -> Text,
        delivery_id -> Integer,
        afsender_system -> Text,
        bilag_id -> Text,
        bilagsdato -> Date,
        bilagstekst -> Nullable<Text>,
        mapping_version -> Text,
        created_at -> Timestamp,
        status -> Text,
        picked_up_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    erp_journal_lines (id) {
        id -> Integer,
        journal_id -> Integer,
        line_no -> Integer,
        posting_id -> BigInt,
        erp_account -> Text,
        erp_dimensions -> Text,
        amount -> crate::storage::amount::Amount,
        debit_credit -> Text,
        currency -> Text,
        posting_date -> Date,
        posting_text -> Text,
        party_type -> Nullable<Text>,
        party_id -> Nullable<Text>,
        case_reference -> Nullable<Text>,
        src_funktion -> Text,
        src_gruppering -> Nullable<Text>,
        src_dranst -> Text,
        src_ejerforhold -> Nullable<Text>,
        src_art -> Text,
        src_omkostningssted -> Nullable<Text>,
        src_pspelement -> Nullable<Text>,
        src_dimensions -> Text,
        mapping_rule -> Text,
        status -> Text,
    }
}

diesel::table! {
    expected_file_alerts (afsender_system, integration, day) {
        afsender_system -> Text,
        integration -> Text,
        day -> Date,
        alerted_at -> Timestamp,
    }
}

diesel::table! {
    installation_identity (id) {
        id -> Text,
    }
}

diesel::table! {
    login_attempts (user_name) {
        user_name -> Text,
        window_start -> Timestamp,
        attempts -> Integer,
    }
}

diesel::table! {
    mapping_versions (id) {
        id -> Integer,
        version -> Text,
        files -> Text,
        author -> Text,
        source -> Text,
        comment -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    receipt_errors (id) {
        id -> Integer,
        kvittering_id -> Text,
        position -> Integer,
        code -> Text,
        text -> Text,
        path -> Nullable<Text>,
        line -> Nullable<Integer>,
        col -> Nullable<Integer>,
        value -> Nullable<Text>,
    }
}

diesel::table! {
    receipt_transfers (id) {
        id -> Integer,
        integration -> Text,
        receipt_name -> Text,
        batch_id -> Nullable<Integer>,
        senders_file_id -> Text,
        kept_as -> Text,
        trigger_document -> Text,
        state -> Text,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        last_error -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    receipts (kvittering_id) {
        kvittering_id -> Text,
        delivery_id -> Integer,
        integration -> Text,
        afsender_system -> Nullable<Text>,
        reference -> Text,
        status -> Text,
        content_hash -> Text,
        processed_at -> Timestamp,
        erp_reference -> Nullable<Text>,
        receipt_json -> Text,
        purged_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    sortiment_fordringstyper (id) {
        id -> Integer,
        sender_id -> Integer,
        code -> Text,
        required -> Text,
    }
}

diesel::table! {
    sortiment_konteringer (id) {
        id -> Integer,
        sender_id -> Integer,
        funktion -> Text,
        dranst -> Text,
        art -> Text,
    }
}

diesel::table! {
    sortiment_senders (id) {
        id -> Integer,
        version_id -> Integer,
        system_uuid -> Text,
        name -> Text,
        authority_cvr -> Text,
        owners -> Text,
        valid_from -> Date,
        valid_to -> Nullable<Date>,
        integrations -> Text,
        certificates -> Text,
        alerts -> Bool,
        sftp_users -> Text,
    }
}

diesel::table! {
    sortiment_versions (id) {
        id -> Integer,
        loaded_at -> Timestamp,
        source -> Text,
        content_hash -> Text,
        content -> Text,
    }
}

diesel::table! {
    target_columns (target) {
        target -> Text,
        column_types -> Text,
        read_at -> Timestamp,
    }
}

diesel::table! {
    target_files (id) {
        id -> Integer,
        target -> Text,
        name -> Text,
        state -> Text,
        row_count -> Integer,
        created_at -> Timestamp,
        written_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    target_outbox (id) {
        id -> Integer,
        target -> Text,
        delivery_id -> Integer,
        payload -> Text,
        created_at -> Timestamp,
        file_id -> Nullable<Integer>,
        forwarded_at -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
        retry_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(batch_files -> deliveries (delivery_id));
diesel::joinable!(batch_receipts -> batch_files (batch_id));
diesel::joinable!(deliveries -> sortiment_versions (sortiment_version_id));
diesel::joinable!(erp_claim_parties -> erp_claims (claim_id));
diesel::joinable!(erp_claim_parties -> erp_debtor_data (debtor_data_id));
diesel::joinable!(erp_claims -> deliveries (delivery_id));
diesel::joinable!(erp_claims -> receipts (kvittering_id));
diesel::joinable!(erp_journal -> deliveries (delivery_id));
diesel::joinable!(erp_journal -> receipts (kvittering_id));
diesel::joinable!(erp_journal_lines -> erp_journal (journal_id));
diesel::joinable!(receipt_errors -> receipts (kvittering_id));
diesel::joinable!(receipt_transfers -> batch_files (batch_id));
diesel::joinable!(receipts -> deliveries (delivery_id));
diesel::joinable!(sortiment_fordringstyper -> sortiment_senders (sender_id));
diesel::joinable!(sortiment_konteringer -> sortiment_senders (sender_id));
diesel::joinable!(sortiment_senders -> sortiment_versions (version_id));
diesel::joinable!(target_outbox -> deliveries (delivery_id));
diesel::joinable!(target_outbox -> target_files (file_id));

diesel::allow_tables_to_appear_in_same_query!(
    admin_sessions,
    admin_users_seen,
    alert_outbox,
    audit_log,
    batch_files,
    batch_receipts,
    deliveries,
    erp_claim_parties,
    erp_claims,
    erp_debtor_data,
    erp_debtors,
    erp_journal,
    erp_journal_lines,
    expected_file_alerts,
    installation_identity,
    login_attempts,
    mapping_versions,
    receipt_errors,
    receipt_transfers,
    receipts,
    sortiment_fordringstyper,
    sortiment_konteringer,
    sortiment_senders,
    sortiment_versions,
    target_columns,
    target_files,
    target_outbox,
);
