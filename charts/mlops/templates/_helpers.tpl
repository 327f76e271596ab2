{{/* Names, labels and the workload every service shares (templates/<service>/ call these). */}}

{{- define "mlops.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's prefix: "<release>" when it already says mlops, else "<release>-mlops". */}}
{{- define "mlops.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mlops.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "metadata"). */}}
{{- define "mlops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mlops.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "mlops.labels" -}}
helm.sh/chart: {{ include "mlops.chart" .root }}
{{ include "mlops.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: mlops
{{- end -}}

{{- define "mlops.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
The in-cluster address of a service: (dict "root" $ "component" "metadata"). In all-in-one mode
every service is the server's.
*/}}
{{- define "mlops.address" -}}
{{- $component := ternary "server" .component .root.Values.allInOne.enabled -}}
{{- printf "%s-%s.%s.svc.cluster.local:%v" (include "mlops.fullname" .root) $component .root.Release.Namespace .root.Values.grpcPort -}}
{{- end -}}

{{/* The workloads that hold data, as a JSON list: the four services, or the one server. */}}
{{- define "mlops.components" -}}
{{- if .Values.allInOne.enabled -}}
["server"]
{{- else -}}
["metadata", "artifact", "scheduler", "monitoring"]
{{- end -}}
{{- end -}}

{{- define "mlops.routerImage" -}}
{{- printf "%s:%s" .Values.router.image.repository (default .Chart.AppVersion .Values.router.image.tag) -}}
{{- end -}}

{{/*
The scheduler's settings as environment (a JSON list): steps run as Jobs in the release's
namespace (docs/kubernetes.md). The scheduler and the all-in-one server take them.
*/}}
{{- define "mlops.schedulerEnv" -}}
{{- $k8s := .Values.scheduler.kubernetes -}}
{{- $step := "" -}}
{{- if $k8s.stepImage.repository -}}
{{- $step = printf "%s:%s" $k8s.stepImage.repository (default .Chart.AppVersion $k8s.stepImage.tag) -}}
{{- end -}}
{{- list
  (dict "name" "MLOPS_EXECUTOR" "value" "kubernetes")
  (dict "name" "MLOPS_K8S_NAMESPACE" "value" .Release.Namespace)
  (dict "name" "MLOPS_K8S_SCHEDULER_ID" "value" (include "mlops.fullname" .))
  (dict "name" "MLOPS_K8S_STEP_IMAGE" "value" $step)
  (dict "name" "MLOPS_K8S_DEFAULT_IMAGE" "value" (default (include "mlops.image" .) $k8s.defaultImage))
  (dict "name" "MLOPS_K8S_IMAGE_PULL_POLICY" "value" $k8s.imagePullPolicy)
  (dict "name" "MLOPS_K8S_QPS" "value" (toString $k8s.qps))
  (dict "name" "MLOPS_K8S_BURST" "value" (toString $k8s.burst)) | toJson -}}
{{- end -}}

{{/* True ("true") when the chart configures authentication: a token file or OIDC. */}}
{{- define "mlops.authEnabled" -}}
{{- if or .Values.auth.tokenFileSecret .Values.auth.oidc.issuer -}}true{{- end -}}
{{- end -}}

{{/*
The client token's env and volume for pods that call the services (the helm test, maintenance
jobs): (dict "root" $ "part" "env"|"mount"|"volume"); nothing when authentication is off.
*/}}
{{- define "mlops.clientToken" -}}
{{- if include "mlops.authEnabled" .root -}}
{{- if eq .part "env" }}
- {name: MLOPS_TOKEN_FILE, value: /etc/mlops/client/token}
{{- else if eq .part "mount" }}
- {name: client-token, mountPath: /etc/mlops/client, readOnly: true}
{{- else }}
- name: client-token
  secret:
    secretName: {{ .root.Values.auth.clientTokenSecret }}
{{- end }}
{{- end -}}
{{- end -}}

{{/*
A server's security settings (docs/security.md) as env, volume mounts or volumes:
(dict "root" $ "part" "env"|"mount"|"volume").
*/}}
{{- define "mlops.serverAuth" -}}
{{- $auth := .root.Values.auth -}}
{{- $on := include "mlops.authEnabled" .root -}}
{{- if $on -}}
{{- $_ := required "auth.clientTokenSecret: a Secret with the token the services present to each other is required with authentication on" $auth.clientTokenSecret -}}
{{- if $auth.oidc.issuer -}}
{{- $_ := required "auth.oidc.audience is required with auth.oidc.issuer" $auth.oidc.audience -}}
{{- $_ := required "auth.bindingsConfigMap is required with auth.oidc.issuer" $auth.bindingsConfigMap -}}
{{- if not (or $auth.oidc.jwksUrl $auth.oidc.jwksConfigMap) -}}
{{- fail "auth.oidc: give jwksUrl or jwksConfigMap" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if eq .part "env" }}
{{- if not $on }}
# Authentication is not configured (auth.*): the services listen beyond loopback with it off,
# which a server refuses unless told.
- {name: MLOPS_INSECURE_ALLOW_UNAUTHENTICATED, value: "true"}
{{- else }}
- {name: MLOPS_IDENTITY_TOKEN_FILE, value: /etc/mlops/client/token}
{{- if $auth.tokenFileSecret }}
- {name: MLOPS_AUTH_TOKEN_FILE, value: /etc/mlops/tokens/tokens.yaml}
{{- end }}
{{- if $auth.oidc.issuer }}
- {name: MLOPS_OIDC_ISSUER, value: {{ $auth.oidc.issuer | quote }}}
- {name: MLOPS_OIDC_AUDIENCE, value: {{ $auth.oidc.audience | quote }}}
- {name: MLOPS_OIDC_JWKS, value: {{ ternary "/etc/mlops/jwks/jwks.json" $auth.oidc.jwksUrl (not (empty $auth.oidc.jwksConfigMap)) | quote }}}
- {name: MLOPS_OIDC_GROUPS_CLAIM, value: {{ $auth.oidc.groupsClaim | quote }}}
- {name: MLOPS_AUTH_BINDINGS_FILE, value: /etc/mlops/bindings/bindings.yaml}
{{- end }}
{{- end }}
{{- if $auth.rateLimitPerSubject }}
- {name: MLOPS_RATE_LIMIT_PER_SUBJECT, value: {{ $auth.rateLimitPerSubject | quote }}}
{{- end }}
{{- if $auth.rateLimitBurst }}
- {name: MLOPS_RATE_LIMIT_BURST, value: {{ $auth.rateLimitBurst | quote }}}
{{- end }}
{{- if $auth.maxStreamsPerSubject }}
- {name: MLOPS_MAX_STREAMS_PER_SUBJECT, value: {{ $auth.maxStreamsPerSubject | quote }}}
{{- end }}
{{- if $auth.auditRetentionDays }}
- {name: MLOPS_AUDIT_RETENTION_DAYS, value: {{ $auth.auditRetentionDays | quote }}}
{{- end }}
{{- else if $on }}
{{- if eq .part "mount" }}
- {name: client-token, mountPath: /etc/mlops/client, readOnly: true}
{{- if $auth.tokenFileSecret }}
- {name: auth-tokens, mountPath: /etc/mlops/tokens, readOnly: true}
{{- end }}
{{- if $auth.oidc.jwksConfigMap }}
- {name: auth-jwks, mountPath: /etc/mlops/jwks, readOnly: true}
{{- end }}
{{- if $auth.oidc.issuer }}
- {name: auth-bindings, mountPath: /etc/mlops/bindings, readOnly: true}
{{- end }}
{{- else }}
- name: client-token
  secret:
    secretName: {{ $auth.clientTokenSecret }}
{{- if $auth.tokenFileSecret }}
- name: auth-tokens
  secret:
    secretName: {{ $auth.tokenFileSecret }}
{{- end }}
{{- if $auth.oidc.jwksConfigMap }}
- name: auth-jwks
  configMap:
    name: {{ $auth.oidc.jwksConfigMap }}
{{- end }}
{{- if $auth.oidc.issuer }}
- name: auth-bindings
  configMap:
    name: {{ $auth.bindingsConfigMap }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
A service: its StatefulSet of one (it owns a RocksDB), its Service (gRPC and metrics ports) and
its headless Service. (dict "root" $ "component" "metadata" "program" "mlops-metadata"); optional
"values" (default .Values.<component>), "serviceAccount", "env" (a list of EnvVar).
*/}}
{{- define "mlops.service" -}}
{{- $root := .root -}}
{{- $values := .values | default (index $root.Values .component) -}}
{{- $name := printf "%s-%s" (include "mlops.fullname" $root) .component -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  labels:
    {{- include "mlops.labels" . | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "mlops.selectorLabels" . | nindent 4 }}
  ports:
    - name: grpc
      port: {{ $root.Values.grpcPort }}
      targetPort: grpc
      appProtocol: grpc
    - name: metrics
      port: {{ $root.Values.metricsPort }}
      targetPort: metrics
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}-headless
  labels:
    {{- include "mlops.labels" . | nindent 4 }}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector:
    {{- include "mlops.selectorLabels" . | nindent 4 }}
  ports:
    - name: grpc
      port: {{ $root.Values.grpcPort }}
      targetPort: grpc
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ $name }}
  labels:
    {{- include "mlops.labels" . | nindent 4 }}
spec:
  replicas: 1
  serviceName: {{ $name }}-headless
  podManagementPolicy: Parallel
  selector:
    matchLabels:
      {{- include "mlops.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "mlops.labels" . | nindent 8 }}
    spec:
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if .serviceAccount }}
      serviceAccountName: {{ .serviceAccount }}
      {{- else }}
      automountServiceAccountToken: false
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: 30
      containers:
        - name: {{ .component }}
          image: {{ include "mlops.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command: [{{ .program | quote }}]
          {{- with $values.extraArgs }}
          args:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          env:
            - {name: MLOPS_PORT, value: {{ $root.Values.grpcPort | quote }}}
            - {name: MLOPS_METRICS_PORT, value: {{ $root.Values.metricsPort | quote }}}
            - {name: MLOPS_LOG_FORMAT, value: {{ $root.Values.logFormat | quote }}}
            - {name: MLOPS_SYNC_WRITES, value: {{ $root.Values.syncWrites | quote }}}
            - {name: MLOPS_DATA_DIR, value: /data}
            # A replacement pod may start before the old process has let go of the database
            # (a force-deleted pod, a lost node's pod): wait for it instead of crash-looping
            # (within the startup probe's 120 s).
            - {name: MLOPS_LOCK_WAIT_S, value: "90"}
            {{- with include "mlops.serverAuth" (dict "root" $root "part" "env") | trim }}{{ . | nindent 12 }}{{ end }}
            - {name: MLOPS_ADVERTISE_HOST, value: {{ printf "%s.%s.svc.cluster.local" $name $root.Release.Namespace | quote }}}
            {{- if not $root.Values.allInOne.enabled }}
            {{- range $peer := list "metadata" "artifact" "scheduler" "monitoring" }}
            - name: {{ printf "MLOPS_%s_ADDRESS" (upper $peer) }}
              value: {{ include "mlops.address" (dict "root" $root "component" $peer) | quote }}
            {{- end }}
            {{- end }}
            {{- with .env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            - {name: grpc, containerPort: {{ $root.Values.grpcPort }}}
            - {name: metrics, containerPort: {{ $root.Values.metricsPort }}}
          startupProbe:
            grpc: {port: {{ $root.Values.grpcPort }}}
            periodSeconds: 2
            failureThreshold: 60
          readinessProbe:
            grpc: {port: {{ $root.Values.grpcPort }}}
            periodSeconds: 5
          livenessProbe:
            grpc: {port: {{ $root.Values.grpcPort }}}
            periodSeconds: 10
            failureThreshold: 3
          {{- with $values.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          volumeMounts:
            - {name: data, mountPath: /data}
            - {name: tmp, mountPath: /tmp}
            {{- with include "mlops.serverAuth" (dict "root" $root "part" "mount") | trim }}{{ . | nindent 12 }}{{ end }}
      volumes:
        - name: tmp
          emptyDir: {}
        {{- with include "mlops.serverAuth" (dict "root" $root "part" "volume") | trim }}{{ . | nindent 8 }}{{ end }}
      {{- with $values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
  volumeClaimTemplates:
    - metadata:
        name: data
        labels:
          {{- include "mlops.selectorLabels" . | nindent 10 }}
      spec:
        accessModes:
          {{- toYaml $values.persistence.accessModes | nindent 10 }}
        {{- with $values.persistence.storageClass }}
        storageClassName: {{ . | quote }}
        {{- end }}
        resources:
          requests:
            storage: {{ $values.persistence.size | quote }}
{{- end -}}
