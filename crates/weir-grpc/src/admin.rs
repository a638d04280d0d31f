//! The Admin service: topics, partitions, topic configuration, DeleteRecords and the
//! cluster description. Each call is a thin conversion around the topic registry; the
//! group calls are in `groups`, the users and ACLs calls in `security_admin`, the API
//! token calls in `tokens`.

use std::collections::BTreeMap;
use std::sync::Arc;

use tonic::{Request, Response, Status};
use weir_broker::security::{Operation, ResourceType};
use weir_cluster::controller::{MAX_MOVES_PER_REQUEST, PartitionMove};
use weir_cluster::is_internal;
use weir_proto::v1::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
    AlterTopicConfigRequest, AlterTopicConfigResponse, BrokerDescription, CreatePartitionsRequest,
    CreatePartitionsResponse, CreateTopicRequest, CreateTopicResponse, DeleteRecordsRequest,
    DeleteRecordsResponse, DeleteTopicRequest, DeleteTopicResponse, DescribeClusterRequest,
    DescribeClusterResponse, DescribeTopicConfigRequest, DescribeTopicConfigResponse,
    DescribeTopicRequest, DescribeTopicResponse, ListTopicsRequest, ListTopicsResponse,
    PartitionDeleteRecordsResult, TopicSummary, admin_server::Admin,
};
use weir_proto::v1::{
    AlterQuotasRequest, AlterQuotasResponse, ListQuotasRequest, ListQuotasResponse,
};
use weir_proto::v1::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DeleteUserRequest, DeleteUserResponse, ListAclsRequest, ListAclsResponse, ListUsersRequest,
    ListUsersResponse, UpsertUserRequest, UpsertUserResponse,
};
use weir_proto::v1::{
    CreateTokenRequest, CreateTokenResponse, ListTokensRequest, ListTokensResponse,
    RevokeTokenRequest, RevokeTokenResponse,
};
use weir_proto::v1::{
    DeleteGroupRequest, DeleteGroupResponse, DescribeGroupRequest, DescribeGroupResponse,
    ListGroupsRequest, ListGroupsResponse, ResetOffsetsRequest, ResetOffsetsResponse,
};

use crate::Broker;
use crate::convert;
use crate::groups;
use crate::page::{self, Listing};
use crate::security_admin;
use crate::status::{self, broker_status, status};
use crate::tokens;

/// The Admin gRPC service. DescribeCluster names each broker by its address for the
/// listener the request came in on (the request context's).
#[derive(Debug, Clone)]
pub struct AdminService {
    broker: Arc<Broker>,
}

impl AdminService {
    pub(crate) fn new(broker: Arc<Broker>) -> AdminService {
        AdminService { broker }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn create_topic(
        &self,
        request: Request<CreateTopicRequest>,
    ) -> Result<Response<CreateTopicResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("CreateTopic");
        let ctx = crate::grpc_context(&request);
        let req = request.into_inner();
        let configs: BTreeMap<String, String> = req.configs.into_iter().collect();
        let topic = weir_broker::topics::create_topic(
            &self.broker.core,
            &ctx,
            &req.name,
            req.partitions,
            req.replication_factor,
            configs,
        )
        .await
        .map_err(broker_status)?;
        let topic = convert::topic_description(&topic).await.map_err(status)?;
        Ok(Response::new(CreateTopicResponse { topic: Some(topic) }))
    }

    async fn delete_topic(
        &self,
        request: Request<DeleteTopicRequest>,
    ) -> Result<Response<DeleteTopicResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("DeleteTopic");
        let ctx = crate::grpc_context(&request);
        let name = request.into_inner().name;
        weir_broker::topics::delete_topic(&self.broker.core, &ctx, &name)
            .await
            .map_err(broker_status)?;
        Ok(Response::new(DeleteTopicResponse {}))
    }

    async fn list_topics(
        &self,
        request: Request<ListTopicsRequest>,
    ) -> Result<Response<ListTopicsResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("ListTopics");
        let ctx = crate::grpc_context(&request);
        let req = request.into_inner();
        // As Kafka's Metadata: a topic the principal may not describe is left out.
        let topics = self
            .broker
            .registry()
            .topics()
            .into_iter()
            .filter(|t| req.include_internal || !is_internal(&t.name))
            .filter(|t| {
                self.broker
                    .core
                    .may(&ctx, Operation::Describe, ResourceType::Topic, &t.name)
            })
            .collect();
        let (page, next_page_token) = page::paginate(
            Listing::Topics,
            topics,
            |t| t.name.as_str(),
            req.page_size,
            &req.page_token,
        )?;
        let topics = page
            .into_iter()
            .map(|t| TopicSummary {
                name: t.name.clone(),
                partitions: t.partition_count(),
                replication_factor: t.replication_factor,
                internal: t.is_internal(),
            })
            .collect();
        Ok(Response::new(ListTopicsResponse {
            topics,
            next_page_token,
        }))
    }

    async fn describe_topic(
        &self,
        request: Request<DescribeTopicRequest>,
    ) -> Result<Response<DescribeTopicResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("DescribeTopic");
        let ctx = crate::grpc_context(&request);
        weir_broker::metadata::check_current(&self.broker.core).map_err(broker_status)?;
        let req = request.into_inner();
        self.broker
            .core
            .authorize_topic(&ctx, weir_broker::security::Operation::Describe, &req.name)
            .map_err(broker_status)?;
        let topic = match req.allow_auto_create {
            true => weir_broker::topics::topic_or_create(&self.broker.core, &ctx, &req.name).await,
            false => self.broker.core.topic(&ctx, &req.name),
        }
        .map_err(broker_status)?;
        let topic = convert::topic_description(&topic).await.map_err(status)?;
        Ok(Response::new(DescribeTopicResponse { topic: Some(topic) }))
    }

    async fn create_partitions(
        &self,
        request: Request<CreatePartitionsRequest>,
    ) -> Result<Response<CreatePartitionsResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("CreatePartitions");
        let ctx = crate::grpc_context(&request);
        let req = request.into_inner();
        let topic = weir_broker::topics::create_partitions(
            &self.broker.core,
            &ctx,
            &req.name,
            req.total_partitions,
        )
        .await
        .map_err(broker_status)?;
        let topic = convert::topic_description(&topic).await.map_err(status)?;
        Ok(Response::new(CreatePartitionsResponse {
            topic: Some(topic),
        }))
    }

    async fn alter_partition_reassignments(
        &self,
        request: Request<AlterPartitionReassignmentsRequest>,
    ) -> Result<Response<AlterPartitionReassignmentsResponse>, Status> {
        let _timer = self
            .broker
            .metrics()
            .rpc_timer("AlterPartitionReassignments");
        let ctx = crate::grpc_context(&request);
        let req = request.into_inner();
        // Checked before the moves are copied: the controller would refuse more anyway.
        if req.partitions.len() > MAX_MOVES_PER_REQUEST {
            return Err(crate::status::invalid(format!(
                "{} partitions in one reassignment; at most {MAX_MOVES_PER_REQUEST}",
                req.partitions.len()
            )));
        }
        let moves = req
            .partitions
            .into_iter()
            .map(|p| PartitionMove {
                partition: p.partition,
                target: (!p.cancel).then_some(p.replicas),
            })
            .collect();
        let throttle = (req.throttle_bytes_per_sec > 0).then_some(req.throttle_bytes_per_sec);
        let topic = weir_broker::topics::reassign_partitions(
            &self.broker.core,
            &ctx,
            &req.topic,
            moves,
            throttle,
        )
        .await
        .map_err(broker_status)?;
        let topic = convert::topic_description(&topic).await.map_err(status)?;
        Ok(Response::new(AlterPartitionReassignmentsResponse {
            topic: Some(topic),
        }))
    }

    async fn describe_topic_config(
        &self,
        request: Request<DescribeTopicConfigRequest>,
    ) -> Result<Response<DescribeTopicConfigResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("DescribeTopicConfig");
        let ctx = crate::grpc_context(&request);
        let entries = weir_broker::configs::describe_topic_config(
            &self.broker.core,
            &ctx,
            &request.into_inner().name,
        )
        .map_err(broker_status)?
        .into_iter()
        .map(convert::config_entry)
        .collect();
        Ok(Response::new(DescribeTopicConfigResponse { entries }))
    }

    async fn alter_topic_config(
        &self,
        request: Request<AlterTopicConfigRequest>,
    ) -> Result<Response<AlterTopicConfigResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("AlterTopicConfig");
        let ctx = crate::grpc_context(&request);
        let req = request.into_inner();
        let set: BTreeMap<String, String> = req.set.into_iter().collect();
        let entries = weir_broker::configs::alter_topic_config(
            &self.broker.core,
            &ctx,
            &req.name,
            &set,
            &req.reset,
            false,
        )
        .await
        .map_err(broker_status)?
        .into_iter()
        .map(convert::config_entry)
        .collect();
        Ok(Response::new(AlterTopicConfigResponse { entries }))
    }

    async fn delete_records(
        &self,
        request: Request<DeleteRecordsRequest>,
    ) -> Result<Response<DeleteRecordsResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("DeleteRecords");
        let ctx = crate::grpc_context(&request);
        let req = request.into_inner();
        let asked: Vec<(u32, i64)> = req
            .partitions
            .iter()
            .map(|pd| (pd.partition, pd.before_offset))
            .collect();
        let deleted =
            weir_broker::records::delete_records(&self.broker.core, &ctx, &req.topic, &asked)
                .await
                .map_err(broker_status)?;
        let results = asked
            .iter()
            .zip(deleted)
            .map(|(&(partition, _), outcome)| match outcome {
                Ok(log_start_offset) => PartitionDeleteRecordsResult {
                    partition,
                    log_start_offset,
                    error: None,
                },
                Err(e) => PartitionDeleteRecordsResult {
                    partition,
                    log_start_offset: -1,
                    error: Some(status::broker_partition_error(&e)),
                },
            })
            .collect();
        Ok(Response::new(DeleteRecordsResponse { results }))
    }

    async fn describe_cluster(
        &self,
        request: Request<DescribeClusterRequest>,
    ) -> Result<Response<DescribeClusterResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("DescribeCluster");
        let ctx = crate::grpc_context(&request);
        weir_broker::metadata::check_current(&self.broker.core).map_err(broker_status)?;
        // Before this broker is registered the view holds it alone, at these addresses.
        let this_broker = self.broker.this_broker.clone();
        let cluster = weir_broker::metadata::cluster(&self.broker.core, &ctx, &this_broker);
        let brokers = cluster
            .brokers
            .into_iter()
            .map(|b| {
                let address =
                    weir_broker::metadata::advertised(&b.endpoints, ctx.listener).unwrap_or("");
                let (host, port) = weir_broker::metadata::split_host_port(address)
                    .map(|(h, p)| (h.to_string(), u32::from(p)))
                    .unwrap_or_else(|| (address.to_owned(), 0));
                BrokerDescription {
                    broker_id: b.node_id,
                    host,
                    port,
                    fenced: b.fenced,
                    rack: b.rack.unwrap_or_default(),
                    voter: b.voter,
                }
            })
            .collect();
        Ok(Response::new(DescribeClusterResponse {
            cluster_id: cluster.cluster_id,
            controller_id: cluster.controller_id,
            brokers,
        }))
    }

    async fn list_groups(
        &self,
        request: Request<ListGroupsRequest>,
    ) -> Result<Response<ListGroupsResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("ListGroups");
        let ctx = crate::grpc_context(&request);
        Ok(Response::new(groups::list_groups(
            &self.broker,
            &ctx,
            request.into_inner(),
        )?))
    }

    async fn describe_group(
        &self,
        request: Request<DescribeGroupRequest>,
    ) -> Result<Response<DescribeGroupResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("DescribeGroup");
        let ctx = crate::grpc_context(&request);
        groups::describe_group(&self.broker, &ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn delete_group(
        &self,
        request: Request<DeleteGroupRequest>,
    ) -> Result<Response<DeleteGroupResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("DeleteGroup");
        let ctx = crate::grpc_context(&request);
        groups::delete_group(&self.broker, &ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn reset_offsets(
        &self,
        request: Request<ResetOffsetsRequest>,
    ) -> Result<Response<ResetOffsetsResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("ResetOffsets");
        let ctx = crate::grpc_context(&request);
        groups::reset_offsets(&self.broker, &ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn upsert_user(
        &self,
        request: Request<UpsertUserRequest>,
    ) -> Result<Response<UpsertUserResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("UpsertUser");
        let ctx = crate::grpc_context(&request);
        security_admin::upsert_user(&self.broker, &ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn delete_user(
        &self,
        request: Request<DeleteUserRequest>,
    ) -> Result<Response<DeleteUserResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("DeleteUser");
        let ctx = crate::grpc_context(&request);
        security_admin::delete_user(&self.broker, &ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_users(
        &self,
        request: Request<ListUsersRequest>,
    ) -> Result<Response<ListUsersResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("ListUsers");
        let ctx = crate::grpc_context(&request);
        security_admin::list_users(&self.broker, &ctx, request.into_inner()).map(Response::new)
    }

    async fn create_acls(
        &self,
        request: Request<CreateAclsRequest>,
    ) -> Result<Response<CreateAclsResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("CreateAcls");
        let ctx = crate::grpc_context(&request);
        security_admin::create_acls(&self.broker, &ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_acls(
        &self,
        request: Request<ListAclsRequest>,
    ) -> Result<Response<ListAclsResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("ListAcls");
        let ctx = crate::grpc_context(&request);
        security_admin::list_acls(&self.broker, &ctx, request.into_inner()).map(Response::new)
    }

    async fn delete_acls(
        &self,
        request: Request<DeleteAclsRequest>,
    ) -> Result<Response<DeleteAclsResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("DeleteAcls");
        let ctx = crate::grpc_context(&request);
        security_admin::delete_acls(&self.broker, &ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn alter_quotas(
        &self,
        request: Request<AlterQuotasRequest>,
    ) -> Result<Response<AlterQuotasResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("AlterQuotas");
        let ctx = crate::grpc_context(&request);
        security_admin::alter_quotas(&self.broker, &ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_quotas(
        &self,
        request: Request<ListQuotasRequest>,
    ) -> Result<Response<ListQuotasResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("ListQuotas");
        let ctx = crate::grpc_context(&request);
        security_admin::list_quotas(&self.broker, &ctx).map(Response::new)
    }

    async fn create_token(
        &self,
        request: Request<CreateTokenRequest>,
    ) -> Result<Response<CreateTokenResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("CreateToken");
        let ctx = crate::grpc_context(&request);
        tokens::create_token(&self.broker, &ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_tokens(
        &self,
        request: Request<ListTokensRequest>,
    ) -> Result<Response<ListTokensResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("ListTokens");
        let ctx = crate::grpc_context(&request);
        tokens::list_tokens(&self.broker, &ctx, request.into_inner()).map(Response::new)
    }

    async fn revoke_token(
        &self,
        request: Request<RevokeTokenRequest>,
    ) -> Result<Response<RevokeTokenResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("RevokeToken");
        let ctx = crate::grpc_context(&request);
        tokens::revoke_token(&self.broker, &ctx, request.into_inner())
            .await
            .map(Response::new)
    }
}
