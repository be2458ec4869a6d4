output "lake_url" {
  description = "TOTES_LAKE_URL for the deployments (TOTES_DEPLOY_LAKE_URL)."
  value       = "s3://${aws_s3_bucket.lake.bucket}/${var.lake_prefix}"
}

output "ecr_repository_url" {
  description = "TOTES_DEPLOY_ECR_REPOSITORY_URL."
  value       = aws_ecr_repository.totes.repository_url
}

output "ecs_cluster" {
  description = "TOTES_DEPLOY_ECS_CLUSTER."
  value       = aws_ecs_cluster.totes.name
}

output "task_role_arn" {
  description = "TOTES_DEPLOY_TASK_ROLE_ARN."
  value       = aws_iam_role.task.arn
}

output "execution_role_arn" {
  description = "TOTES_DEPLOY_EXECUTION_ROLE_ARN."
  value       = aws_iam_role.execution.arn
}

output "alert_topic_arn" {
  description = "TOTES_DEPLOY_ALERT_TOPIC_ARN."
  value       = aws_sns_topic.alerts.arn
}

output "work_pool" {
  description = "The Prefect work pool the worker polls."
  value       = local.pool_name
}

output "work_pool_base_job_template" {
  description = "The base job template of the work pool (prefect work-pool create --base-job-template)."
  value       = module.work_pool_template.base_job_template
}

output "source_url_secret_arn" {
  description = "TOTES_DEPLOY_SOURCE_URL_SECRET_ARN: ECS puts its value into TOTES_SOURCE_URL."
  value       = aws_secretsmanager_secret.source_url.arn
}

output "warehouse_url_secret_arn" {
  description = "TOTES_DEPLOY_WAREHOUSE_URL_SECRET_ARN: ECS puts its value into TOTES_WAREHOUSE_URL."
  value       = aws_secretsmanager_secret.warehouse_url.arn
}

output "sftp_url_secret_arn" {
  description = "TOTES_DEPLOY_SFTP_URL_SECRET_ARN: ECS puts its value into TOTES_SFTP_URL."
  value       = aws_secretsmanager_secret.sftp_url.arn
}

output "prefect_api_key_secret_arn" {
  description = "TOTES_DEPLOY_PREFECT_API_KEY_SECRET_ARN: ECS puts its value into PREFECT_API_KEY (worker and flow runs)."
  value       = aws_secretsmanager_secret.prefect_api_key.arn
}

output "flow_run_log_group" {
  description = "TOTES_DEPLOY_LOG_GROUP: the CloudWatch log group of the flow runs."
  value       = aws_cloudwatch_log_group.etl.name
}
