//! Admin API keys: created through the API (shown once), and the
//! bootstrap key a fresh gateway makes or is given.

use burrow_api::types::{AdminKeyCreated, NewAdminKey};
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

/// Makes sure an admin key exists: the one given (`BURROW_ADMIN_KEY`), or
/// on a fresh database a new one, returned so the caller can show it once.
pub async fn bootstrap(store: &Store, given: Option<&str>) -> Result<Option<String>, String> {
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
                expires_at: None,
                revoked: false,
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
            expires_at: None,
            revoked: false,
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(k.token))
}
