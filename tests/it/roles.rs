//! Roles and the audit trail over HTTP: each role refused what it may not do (the page hides it and the server
//! refuses it), and every login, failed login, change and refusal recorded with who, when and from where; the
//! same trail printed by `fkoeko audit list`.

use fkoeko_adapter::config::AdminUser;
use fkoeko_adapter::domain::audit::Role;

use crate::common::*;
use crate::web::{answer, client, get};

/// Logs `name` in with the test password; the session cookie.
fn log_in_as(app: &TestApp, name: &str) -> String {
    let admin = app.server.as_ref().unwrap().admin_url("/login");
    let response = client().post(&admin).send_form(&[("user", name), ("password", ADMIN_PASSWORD)]).unwrap();
    assert_eq!(response.status(), 303, "{name} logs in");
    response.header("Set-Cookie").expect("a session cookie").split(';').next().unwrap().to_string()
}

/// The mapping files in force as the edit form sends them, with a comment line added to konti.csv.
fn edited_form(app: &TestApp, base: &str) -> Vec<(String, String)> {
    let files = fkoeko_adapter::domain::mapping::read_dir(&app.config.paths.mappings).unwrap();
    let mut form = vec![("base".to_string(), base.to_string()), ("comment".to_string(), "en kommentar".to_string())];
    for (name, content) in files {
        let content = if name == "konti.csv" { format!("# rettet af redaktøren\n{content}") } else { content };
        form.push((format!("fil:{name}"), content));
    }
    form
}

#[test]
fn each_role_is_refused_what_it_may_not_do_and_the_audit_trail_records_it() {
    let app = TestApp::start_with(|c| {
        let hash = admin_password_hash();
        c.admin.users.push(AdminUser { name: "læser".into(), password_hash: hash.clone(), role: Role::Read });
        c.admin.users.push(AdminUser { name: "redaktør".into(), password_hash: hash, role: Role::Mapping });
    });
    let admin = |path: &str| app.server.as_ref().unwrap().admin_url(path);
    let base = app.count("SELECT CAST(MAX(id) AS BIGINT) AS n FROM mapping_versions").to_string();
    let version_before = app.mapping_version();

    // A wrong password first: recorded with the name typed.
    let (status, _, _) = answer(client().post(&admin("/login")).send_form(&[("user", "læser"), ("password", "forkert")]));
    assert_eq!(status, 200);

    // The reader: sees the mappings, not the way to change them; is refused the change, the rollback and the trail.
    let reader = log_in_as(&app, "læser");
    let (status, page, _) = get(&admin("/mapninger"), Some(&reader));
    assert_eq!(status, 200);
    assert!(!page.contains("/mapninger/ret") && !page.contains("href=\"/revision\""), "hidden from a reader");
    assert_eq!(get(&admin("/mapninger/ret"), Some(&reader)).0, 403);
    let form = edited_form(&app, &base);
    let (status, page, _) = answer(
        client()
            .post(&admin("/mapninger/ret"))
            .set("Cookie", &reader)
            .send_form(&form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>()),
    );
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("Din rolle (læser) må ikke gem mapninger"), "{page}");
    assert_eq!(answer(client().post(&admin("/mapninger/historik/1/rul-tilbage")).set("Cookie", &reader).call()).0, 403);
    assert_eq!(get(&admin("/revision"), Some(&reader)).0, 403);
    assert_eq!(app.mapping_version(), version_before, "nothing changed");

    // The mapping editor: may change the mappings; not read the trail.
    let editor = log_in_as(&app, "redaktør");
    let (status, page, _) = get(&admin("/mapninger"), Some(&editor));
    assert!(status == 200 && page.contains("/mapninger/ret") && !page.contains("href=\"/revision\""));
    let (status, page, location) = answer(
        client()
            .post(&admin("/mapninger/ret"))
            .set("Cookie", &editor)
            .send_form(&form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>()),
    );
    assert_eq!(status, 303, "{page}");
    assert!(location.unwrap().starts_with("/mapninger?gemt="));
    assert_ne!(app.mapping_version(), version_before);
    assert_eq!(get(&admin("/revision"), Some(&editor)).0, 403);

    // The operator reads it all, newest first.
    let operator = log_in_as(&app, ADMIN_USER);
    let (status, page, _) = get(&admin("/revision"), Some(&operator));
    assert_eq!(status, 200);
    assert!(page.contains("href=\"/revision\""));
    let trail = app.rows("SELECT json_array(actor, action, detail, origin) AS row FROM audit_log ORDER BY id", 4);
    let actions: Vec<(String, String)> = trail
        .iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
        .filter(|(_, a)| a != "sortiment_loaded" && a != "users_changed")
        .collect();
    let expected: Vec<(String, String)> = [
        ("mappings/", "mapping_files_changed"),
        ("læser", "login_failed"),
        ("læser", "login"),
        ("læser", "refused"),
        ("læser", "refused"),
        ("læser", "refused"),
        ("læser", "refused"),
        ("redaktør", "login"),
        ("redaktør", "mapping_saved"),
        ("redaktør", "refused"),
        (ADMIN_USER, "login"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(actions, expected);
    // From where: the page's client for what came through the page; the folder for the first version.
    assert!(trail
        .iter()
        .filter(|r| r[0].as_deref() != Some("mappings/") && !matches!(r[1].as_deref(), Some("sortiment_loaded" | "users_changed")))
        .all(|r| r[3].as_deref() == Some("127.0.0.1")));
    let saved = trail.iter().find(|r| r[1].as_deref() == Some("mapping_saved")).unwrap();
    assert!(saved[2].as_deref().unwrap().contains("en kommentar"), "{saved:?}");
    assert!(trail.iter().any(|r| r[1].as_deref() == Some("sortiment_loaded")), "the first start's sortiment load");
    for (actor, action) in [("læser", "login_failed"), ("redaktør", "mapping_saved")] {
        assert!(page.contains(actor) && page.contains(fkoeko_adapter::domain::audit::AuditAction::parse(action).unwrap().label()));
    }

    // The same trail for an auditor, on the command line, filtered.
    let out = fkoeko_command(&app.db_url).args(["audit", "list", "--actor", "læser", "--action", "refused"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1 + 4, "{text}");
    assert!(text.lines().skip(1).all(|l| l.contains("\tlæser\trefused\t") && l.ends_with("\t127.0.0.1")), "{text}");
}

#[test]
fn a_user_without_a_role_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fkoeko.toml");
    std::fs::write(&config, "[admin]\nusers = [{ name = \"jens\", password_hash = \"x\" }]\n").unwrap();
    let out = fkoeko_command(&new_database_url(dir.path())).env("FKOEKO_CONFIG", &config).args(["audit", "list"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("role"), "{stderr}");
}

#[test]
fn only_an_operator_takes_a_batch_file_over_from_the_page() {
    let app = TestApp::start_with(|c| {
        c.admin.users.push(AdminUser { name: "læser".into(), password_hash: admin_password_hash(), role: Role::Read });
    });
    let admin = |path: &str| app.server.as_ref().unwrap().admin_url(path);
    // A file whose process holds it for an hour yet (it hangs, or died).
    app.execute(
        "INSERT INTO batch_files (file_key, integration, file_name, stored_name, content_hash, size_bytes, state, items_done, \
         accepted_count, rejected_count, claimed_by, lease_until, received_at) \
         VALUES ('k', 'SF1590_A', 'hængt.xml', 'x-hængt.xml', 'h', 1, 'processing', 3, 3, 0, 'død-proces', '2999-01-01 00:00:00', '2026-11-26 08:00:00')",
    );
    let reader = log_in_as(&app, "læser");
    let (status, page, _) = get(&admin("/batchfiler"), Some(&reader));
    assert!(status == 200 && page.contains("hængt.xml") && !page.contains("Tag over nu"), "{page}");
    assert_eq!(answer(client().post(&admin("/batchfiler/1/tag-over")).set("Cookie", &reader).call()).0, 403);
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM batch_files WHERE lease_until > '2100-01-01'"), 1, "still held");

    let operator = log_in_as(&app, ADMIN_USER);
    let (_, page, _) = get(&admin("/batchfiler"), Some(&operator));
    assert!(page.contains("Tag over nu"), "{page}");
    let (status, _, location) = answer(client().post(&admin("/batchfiler/1/tag-over")).set("Cookie", &operator).call());
    assert_eq!(status, 303);
    assert!(location.unwrap().starts_with("/batchfiler?frigivet="));
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM batch_files WHERE lease_until > '2100-01-01'"), 0, "released");
    let trail = app.rows(
        "SELECT json_array(actor, action, origin) AS row FROM audit_log WHERE action IN ('batch_taken_over', 'refused') ORDER BY id",
        3,
    );
    assert_eq!(trail.len(), 2, "{trail:?}");
    assert_eq!(trail[0][..2], [Some("læser".into()), Some("refused".into())]);
    assert_eq!(trail[1], vec![Some(ADMIN_USER.into()), Some("batch_taken_over".into()), Some("127.0.0.1".into())]);
    assert_eq!(answer(client().post(&admin("/batchfiler/999/tag-over")).set("Cookie", &operator).call()).0, 404);

    // A done file: its receipt file written again, by an operator only.
    app.execute("UPDATE batch_files SET state = 'done', finished_at = '2026-11-26 09:00:00' WHERE id = 1");
    let (_, page, _) = get(&admin("/batchfiler"), Some(&operator));
    assert!(page.contains("Skriv kvitteringsfil igen"), "{page}");
    assert_eq!(answer(client().post(&admin("/batchfiler/1/kvittering")).set("Cookie", &reader).call()).0, 403);
    assert_eq!(answer(client().post(&admin("/batchfiler/1/kvittering")).set("Cookie", &operator).call()).0, 303);
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM batch_files WHERE state = 'receipt'"), 1, "back to the receipt step");
}

#[test]
fn only_an_operator_sees_the_retention_periods_and_purges_from_the_page() {
    let app = TestApp::start_with(|c| {
        let hash = admin_password_hash();
        c.admin.users.push(AdminUser { name: "læser".into(), password_hash: hash.clone(), role: Role::Read });
        c.admin.users.push(AdminUser { name: "redaktør".into(), password_hash: hash, role: Role::Mapping });
        c.retention.import_rows_days = fkoeko_adapter::domain::retention::Days::new(30);
        // Only on request here: no daily task.
        c.retention.interval_hours = 0;
    });
    let admin = |path: &str| app.server.as_ref().unwrap().admin_url(path);
    app.send(&crate::common::delivery::Delivery::one("RET-1").soap11());
    app.execute(
        "UPDATE erp_journal SET status = 'HENTET', created_at = '2025-01-01 00:00:00', picked_up_at = '2025-01-02 00:00:00' WHERE bilag_id = 'RET-1'",
    );
    let kept = || app.count("SELECT COUNT(*) AS n FROM erp_journal WHERE bilag_id = 'RET-1'");

    for user in ["læser", "redaktør"] {
        let cookie = log_in_as(&app, user);
        let (status, page, _) = get(&admin("/afvisninger"), Some(&cookie));
        assert!(status == 200 && !page.contains("href=\"/opbevaring\""), "hidden from {user}");
        assert_eq!(get(&admin("/opbevaring"), Some(&cookie)).0, 403, "{user} sees the periods");
        let (status, page, _) = answer(client().post(&admin("/opbevaring/slet")).set("Cookie", &cookie).call());
        assert_eq!(status, 403, "{user} purges: {page}");
        assert_eq!(kept(), 1);
    }

    let operator = log_in_as(&app, ADMIN_USER);
    let (status, page, _) = get(&admin("/opbevaring"), Some(&operator));
    assert_eq!(status, 200);
    assert!(page.contains("href=\"/opbevaring\"") && page.contains("Slet nu"), "{page}");
    let row = page.split("data-kind=\"import_rows_days\"").nth(1).unwrap().split("</tr>").next().unwrap();
    assert!(row.contains("30 dage") && row.contains(">1</td>"), "what a purge would take now: {row}");
    let (status, _, location) = answer(client().post(&admin("/opbevaring/slet")).set("Cookie", &operator).call());
    assert_eq!(status, 303);
    assert_eq!(location.as_deref(), Some("/opbevaring?slettet=1"));
    assert_eq!(kept(), 0);
    let trail =
        app.rows("SELECT json_array(actor, action, origin) AS row FROM audit_log WHERE action IN ('purged', 'refused') ORDER BY id", 3);
    let actions: Vec<(&str, &str)> = trail.iter().map(|r| (r[0].as_deref().unwrap(), r[1].as_deref().unwrap())).collect();
    assert_eq!(
        actions,
        [("læser", "refused"), ("læser", "refused"), ("redaktør", "refused"), ("redaktør", "refused"), (ADMIN_USER, "purged")]
    );
    assert_eq!(trail[4][2].as_deref(), Some("127.0.0.1"));
}

#[test]
fn users_added_removed_or_given_another_role_in_the_configuration_are_in_the_audit_trail() {
    let hash = admin_password_hash();
    let user = |name: &str, role| AdminUser { name: name.into(), password_hash: hash.clone(), role };
    let first = TestApp::start_with(|c| c.admin.users = vec![user("jens", Role::Read), user("karen", Role::Operator)]);
    let changes = || first.rows("SELECT json_array(detail, origin) AS row FROM audit_log WHERE action = 'users_changed' ORDER BY id", 2);
    assert_eq!(changes().len(), 1);
    assert_eq!(changes()[0][0].as_deref(), Some("tilføjet: jens (læser), karen (driftsansvarlig)"));
    assert_eq!(changes()[0][1].as_deref(), Some("konfigurationen"));

    // Started again with the same users (a second instance, a restart): nothing new.
    drop(TestApp::start_beside(&first, |c| c.admin.users = vec![user("jens", Role::Read), user("karen", Role::Operator)]));
    assert_eq!(changes().len(), 1);

    // Jens made a mapping editor with a new password, Karen gone, Ole added.
    let mut jens = user("jens", Role::Mapping);
    jens.password_hash = fkoeko_adapter::web::hash_password("en anden lang sætning").unwrap();
    drop(TestApp::start_beside(&first, |c| c.admin.users = vec![jens, user("ole", Role::Operator)]));
    let all = changes();
    assert_eq!(all.len(), 2);
    assert_eq!(
        all[1][0].as_deref(),
        Some("tilføjet: ole (driftsansvarlig); fjernet: karen; rolle ændret: jens: læser → mapningsredaktør; ny adgangskode: jens")
    );
    // The hash itself is never written to the trail or the table.
    assert_eq!(first.count(&format!("SELECT COUNT(*) AS n FROM admin_users_seen WHERE password_digest = '{hash}'")), 0);
}
