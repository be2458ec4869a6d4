variable "region" {
  description = "AWS region for every resource."
  type        = string
  default     = "eu-west-2"
}

variable "name" {
  description = "Prefix of every resource name."
  type        = string
  default     = "totes"
}

variable "lake_bucket_name" {
  description = "Globally unique name of the lake bucket."
  type        = string
}

variable "lake_prefix" {
  description = "Prefix inside the bucket that the pipeline owns (TOTES_LAKE_URL = s3://bucket/prefix)."
  type        = string
  default     = "totes"
}

variable "alert_email" {
  description = "E-mail address subscribed to failed-run alerts (empty: no subscription)."
  type        = string
  default     = ""
}

variable "prefect_api_url" {
  description = "PREFECT_API_URL of the Prefect Cloud workspace (or self-hosted server) the worker polls."
  type        = string
}

variable "prefect_image" {
  description = "Image of the Prefect ECS worker (Prefect with prefect-aws)."
  type        = string
  default     = "prefecthq/prefect-aws:0.7.12-python3.11"
}

variable "worker_subnet_ids" {
  description = "Private subnets for the worker and the flow-run tasks (with a route to the databases, S3 and Prefect)."
  type        = list(string)
}

variable "worker_security_group_ids" {
  description = "Security groups of the worker and the flow-run tasks."
  type        = list(string)
}
