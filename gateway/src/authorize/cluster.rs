//! Cluster administration and inter-broker APIs: ACLs, client quotas, SCRAM credentials,
//! delegation tokens, partition reassignment, leader election, log dirs, features, the quorum
//! and the controller/broker/share-state APIs.
//!
//! All are whole-request checks on the cluster resource (DESCRIBE, ALTER, DESCRIBE_CONFIGS,
//! ALTER_CONFIGS or CLUSTER_ACTION); nothing is redacted on the way back. A denial is the
//! API's top-level error (see `deny_whole`), or for the APIs whose error is carried per entry,
//! an entry per request item ([`deny_entries`]).

use kafka_protocol::messages::*;

use super::{not_routed, pass, Decision, Req, Step};
use crate::acl::Operation as Op;

/// The request side of the cluster APIs.
pub(super) fn check(r: &Req<'_>) -> Step {
    use ApiKey::*;
    match r.key {
        DescribeAcls
        | ListPartitionReassignments
        | DescribeUserScramCredentials
        | DescribeQuorum
        | DescribeDelegationToken
        | DescribeLogDirs => r.cluster_only(Op::Describe),
        CreateAcls
        | DeleteAcls
        | AlterPartitionReassignments
        | ElectLeaders
        | AlterReplicaLogDirs
        | AlterUserScramCredentials
        | UpdateFeatures
        | CreateDelegationToken
        | RenewDelegationToken
        | ExpireDelegationToken
        | UnregisterBroker
        | AddRaftVoter
        | RemoveRaftVoter => r.cluster_only(Op::Alter),
        DescribeClientQuotas | ListConfigResources => r.cluster_only(Op::DescribeConfigs),
        AlterClientQuotas => r.cluster_only(Op::AlterConfigs),
        WriteTxnMarkers => {
            if r.cluster(Op::Alter) {
                Ok(pass())
            } else {
                r.cluster_only(Op::ClusterAction)
            }
        }
        // Inter-broker and controller APIs.
        Vote
        | BeginQuorumEpoch
        | EndQuorumEpoch
        | AlterPartition
        | Envelope
        | FetchSnapshot
        | BrokerRegistration
        | BrokerHeartbeat
        | AllocateProducerIds
        | ControllerRegistration
        | AssignReplicasToDirs
        | UpdateRaftVoter
        | InitializeShareGroupState
        | ReadShareGroupState
        | WriteShareGroupState
        | DeleteShareGroupState
        | ReadShareGroupStateSummary => r.cluster_only(Op::ClusterAction),
        other => Err(not_routed(other)),
    }
}

/// Whole-request denials of APIs whose error is carried per entry (or not at all in some
/// versions). `Ok(None)`: not one of those.
pub(super) fn deny_entries(r: &Req<'_>, code: i16) -> Result<Option<Decision>, Decision> {
    let d = match r.key {
        ApiKey::CreateAcls => {
            let req: CreateAclsRequest = r.decode()?;
            let results = req
                .creations
                .iter()
                .map(|_| create_acls_response::AclCreationResult::default().with_error_code(code))
                .collect();
            r.respond(&CreateAclsResponse::default().with_results(results))
        }
        ApiKey::DeleteAcls => {
            let req: DeleteAclsRequest = r.decode()?;
            let results = req
                .filters
                .iter()
                .map(|_| {
                    delete_acls_response::DeleteAclsFilterResult::default().with_error_code(code)
                })
                .collect();
            r.respond(&DeleteAclsResponse::default().with_filter_results(results))
        }
        ApiKey::ElectLeaders => {
            let req: ElectLeadersRequest = r.decode()?;
            let mut resp = ElectLeadersResponse::default();
            if r.version >= 1 {
                resp.error_code = code;
            }
            resp.replica_election_results = req
                .topic_partitions
                .unwrap_or_default()
                .into_iter()
                .map(|t| {
                    elect_leaders_response::ReplicaElectionResult::default()
                        .with_topic(t.topic)
                        .with_partition_result(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    elect_leaders_response::PartitionResult::default()
                                        .with_partition_id(*p)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect();
            r.respond(&resp)
        }
        ApiKey::AlterReplicaLogDirs => {
            let req: AlterReplicaLogDirsRequest = r.decode()?;
            let results = req
                .dirs
                .iter()
                .flat_map(|d| d.topics.iter())
                .map(|t| {
                    alter_replica_log_dirs_response::AlterReplicaLogDirTopicResult::default()
                        .with_topic_name(t.name.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    alter_replica_log_dirs_response::AlterReplicaLogDirPartitionResult::default()
                                        .with_partition_index(*p)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect();
            r.respond(&AlterReplicaLogDirsResponse::default().with_results(results))
        }
        ApiKey::AlterClientQuotas => {
            let req: AlterClientQuotasRequest = r.decode()?;
            let entries = req
                .entries
                .iter()
                .map(|e| {
                    alter_client_quotas_response::EntryData::default()
                        .with_error_code(code)
                        .with_entity(
                            e.entity
                                .iter()
                                .map(|x| {
                                    alter_client_quotas_response::EntityData::default()
                                        .with_entity_type(x.entity_type.clone())
                                        .with_entity_name(x.entity_name.clone())
                                })
                                .collect(),
                        )
                })
                .collect();
            r.respond(&AlterClientQuotasResponse::default().with_entries(entries))
        }
        ApiKey::AlterUserScramCredentials => {
            let req: AlterUserScramCredentialsRequest = r.decode()?;
            let users = req
                .deletions
                .iter()
                .map(|d| d.name.clone())
                .chain(req.upsertions.iter().map(|u| u.name.clone()));
            let results = users
                .map(|user| {
                    alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default(
                    )
                    .with_user(user)
                    .with_error_code(code)
                })
                .collect();
            r.respond(&AlterUserScramCredentialsResponse::default().with_results(results))
        }
        ApiKey::UpdateFeatures => {
            let req: UpdateFeaturesRequest = r.decode()?;
            let mut resp = UpdateFeaturesResponse::default().with_error_code(code);
            if r.version < 2 {
                resp.results = req
                    .feature_updates
                    .iter()
                    .map(|f| {
                        update_features_response::UpdatableFeatureResult::default()
                            .with_feature(f.feature.clone())
                            .with_error_code(code)
                    })
                    .collect();
            }
            r.respond(&resp)
        }
        ApiKey::DescribeLogDirs => {
            // Before v3 Kafka answers an unauthorized request with no log dirs.
            let mut resp = DescribeLogDirsResponse::default();
            if r.version >= 3 {
                resp.error_code = code;
            }
            r.respond(&resp)
        }
        _ => return Ok(None),
    };
    Ok(Some(d))
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read back what the gateway wrote
mod tests {
    use super::*;
    use crate::authorize::testing::*;
    // The test helper, not this family's `check`: tests go through the router.
    use crate::authorize::testing::check;

    #[test]
    fn cluster_apis() {
        let none = names(&[]);
        let resp: DescribeAclsResponse = respond(
            check(
                ApiKey::DescribeAcls,
                3,
                &DescribeAclsRequest::default(),
                &Acl::default(),
                &none,
            ),
            ApiKey::DescribeAcls,
            3,
        );
        assert_eq!(resp.error_code, CLUSTER_AUTHORIZATION_FAILED);
        let create = CreateAclsRequest::default().with_creations(vec![
            create_acls_request::AclCreation::default(),
            create_acls_request::AclCreation::default(),
        ]);
        let resp: CreateAclsResponse = respond(
            check(ApiKey::CreateAcls, 3, &create, &Acl::default(), &none),
            ApiKey::CreateAcls,
            3,
        );
        assert_eq!(
            resp.results
                .iter()
                .map(|r| r.error_code)
                .collect::<Vec<_>>(),
            [CLUSTER_AUTHORIZATION_FAILED; 2]
        );
        let admin = Acl::default().allow(Rt::Cluster, CLUSTER_NAME, Op::Alter);
        assert!(is_pass(&check(
            ApiKey::CreateAcls,
            3,
            &create,
            &admin,
            &none
        )));
        // No error form: close.
        let markers = WriteTxnMarkersRequest::default();
        assert!(matches!(
            check(ApiKey::WriteTxnMarkers, 1, &markers, &Acl::default(), &none),
            Decision::Close(_)
        ));
        // Unknown API keys cannot be authorized.
        let (f, hl) = frame(ApiKey::DescribeAcls, 3, &DescribeAclsRequest::default());
        assert!(matches!(
            check_request(9999, 0, 7, hl, &f, &admin, &none),
            Decision::Close(_)
        ));
        // Open to everyone.
        assert!(is_pass(&check(
            ApiKey::ApiVersions,
            3,
            &ApiVersionsRequest::default(),
            &Acl::default(),
            &none
        )));
        assert!(is_pass(&check(
            ApiKey::DescribeCluster,
            1,
            &DescribeClusterRequest::default(),
            &Acl::default(),
            &none
        )));
    }
}
