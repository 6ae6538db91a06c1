//! Admin API keys: created through the API (shown once), and the
//! bootstrap key a fresh gateway makes or is given.

use burrow_api::types::{AdminKeyCreated, AdminKeyInfo, AdminKeyRevoked, NewAdminKey};
use burrow_api::validate;
use burrow_auth::admin_key;
use burrow_store::{AdminKey, Store, now_micros};
use http::{Response, StatusCode};

use super::call::Call;
use super::error::{Body, Refusal, json};

/// `POST /admin-keys`.
pub(super) async fn create(call: &Call<'_>, b: NewAdminKey) -> Result<Response<Body>, Refusal> {
    validate::name("admin key", &b.name)?;
    let expires_at = b.expires_in_seconds.map(|s| {
        now_micros().saturating_add(
            i64::try_from(s)
                .unwrap_or(i64::MAX / 2_000_000)
                .saturating_mul(1_000_000),
        )
    });
    let k = admin_key::generate();
    call.store
        .insert_admin_key(&AdminKey {
            id: k.id.clone(),
            name: b.name.clone(),
            hash: k.hash.clone(),
            created_at: now_micros(),
            expires_at,
            revoked: false,
            last_used_at: None,
        })
        .await?;
    call.audit("admin-key-create", &k.id, b.name.clone()).await;
    Ok(json(
        StatusCode::CREATED,
        &AdminKeyCreated {
            id: k.id,
            name: b.name,
            key: k.token,
            expires_at,
        },
    ))
}

/// `GET /admin-keys`.
pub(super) async fn list(call: &Call<'_>) -> Result<Response<Body>, Refusal> {
    let keys = call.store.admin_keys().await?;
    let list: Vec<AdminKeyInfo> = keys
        .into_iter()
        .map(|k| AdminKeyInfo {
            current: k.id == call.actor,
            id: k.id,
            name: k.name,
            created_at: k.created_at,
            expires_at: k.expires_at,
            last_used_at: k.last_used_at,
            revoked: k.revoked,
        })
        .collect();
    Ok(json(StatusCode::OK, &list))
}

/// `DELETE /admin-keys/{id}`: refused for the last key that works.
pub(super) async fn revoke(call: &Call<'_>, id: &str) -> Result<Response<Body>, Refusal> {
    call.store.revoke_admin_key(id, now_micros()).await?;
    call.audit("admin-key-revoke", id, String::new()).await;
    Ok(json(StatusCode::OK, &AdminKeyRevoked { id: id.to_owned() }))
}

/// Makes sure an admin key exists: the one given (`BURROW_ADMIN_KEY`), or
/// on a fresh database a new one, returned so the caller can show it once.
/// A key this makes (given or new) expires after `lifetime`, if set.
pub async fn bootstrap(
    store: &Store,
    given: Option<&str>,
    lifetime: Option<std::time::Duration>,
) -> Result<Option<String>, String> {
    let expires_at = lifetime
        .map(|d| now_micros().saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)));
    if let Some(token) = given {
        let (id, secret) = admin_key::parse(token).map_err(|e| format!("BURROW_ADMIN_KEY: {e}"))?;
        match store.admin_key(id).await.map_err(|e| e.to_string())? {
            Some(k) if admin_key::verify(secret, &k.hash) => return Ok(None),
            Some(_) => return Err("BURROW_ADMIN_KEY has a known id but a different secret".into()),
            None => {}
        }
        let hash = admin_key::hash_secret(secret);
        store
            .insert_admin_key(&AdminKey {
                id: id.to_owned(),
                name: "bootstrap".into(),
                hash,
                created_at: now_micros(),
                expires_at,
                revoked: false,
                last_used_at: None,
            })
            .await
            .map_err(|e| e.to_string())?;
        return Ok(None);
    }
    if !store
        .admin_keys()
        .await
        .map_err(|e| e.to_string())?
        .is_empty()
    {
        return Ok(None);
    }
    let k = admin_key::generate();
    store
        .insert_admin_key(&AdminKey {
            id: k.id.clone(),
            name: "bootstrap".into(),
            hash: k.hash.clone(),
            created_at: now_micros(),
            expires_at,
            revoked: false,
            last_used_at: None,
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(k.token))
}
