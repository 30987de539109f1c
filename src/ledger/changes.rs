//! A cheap fingerprint of everything a provider's plan depends on that is
//! not our own push records: stock movements, links made or moved. A
//! scheduler re-plans when it changes, and only then.

use super::db;
use super::{Ledger, Result};
use crate::domain::ProviderName;
use sqlx::Row;

/// Changes when a movement is journaled, a listing of the provider is
/// linked, unlinked or moved to another SKU, or rules or bundles are
/// imported (by any process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanVersion {
    movements: i64,
    link_changes: i64,
    listings: i64,
    definitions: i64,
}

impl Ledger {
    /// The current [`PlanVersion`] of `provider`: three index lookups.
    pub async fn plan_version(&self, provider: ProviderName) -> Result<PlanVersion> {
        db(async move {
            let row = sqlx::query(
                "SELECT (SELECT COALESCE(MAX(id), 0) FROM movements),
                    (SELECT COALESCE(MAX(id), 0) FROM link_changes),
                    (SELECT COUNT(*) FROM listings WHERE provider = $1),
                    (SELECT COALESCE(MAX(id), 0) FROM definition_changes)",
            )
            .bind(provider.as_str())
            .fetch_one(&self.read)
            .await?;
            Ok(PlanVersion {
                movements: row.get(0),
                link_changes: row.get(1),
                listings: row.get(2),
                definitions: row.get(3),
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::{ListingRef, ProviderName};
    use crate::ledger::test_support::temp_ledger;

    #[tokio::test]
    async fn the_version_moves_with_stock_and_links_only() {
        let (_d, ledger) = temp_ledger().await;
        let p = ProviderName::Bazaardan;
        let v0 = ledger.plan_version(p).await.unwrap();
        ledger
            .import_stock(&[("A".into(), 5)], "b1", "seed")
            .await
            .unwrap();
        let v1 = ledger.plan_version(p).await.unwrap();
        assert_ne!(v0, v1, "a movement changes it");
        let l = ListingRef {
            provider: p,
            listing_id: "1".into(),
            variant_id: String::new(),
        };
        ledger
            .import_mappings(&[("A".into(), l.clone())])
            .await
            .unwrap();
        let v2 = ledger.plan_version(p).await.unwrap();
        assert_ne!(v1, v2, "a new link changes it");
        assert_eq!(v2, ledger.plan_version(p).await.unwrap());
        // Another provider's links are not this one's plan.
        let other = ListingRef {
            provider: ProviderName::Pazarsync,
            ..l
        };
        ledger
            .import_mappings(&[("A".into(), other)])
            .await
            .unwrap();
        assert_eq!(v2, ledger.plan_version(p).await.unwrap());
    }
}
