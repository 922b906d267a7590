BEGIN TRANSACTION;
CREATE TABLE ollama_deck_counter (
	name VARCHAR(40) NOT NULL, 
	value BIGINT NOT NULL, 
	PRIMARY KEY (name)
);
INSERT INTO "ollama_deck_counter" VALUES('seq',30);
CREATE TABLE ollama_deck_installed_model (
	host VARCHAR(600) NOT NULL, 
	name VARCHAR(600) NOT NULL, 
	data TEXT NOT NULL, 
	seen_at FLOAT NOT NULL, 
	PRIMARY KEY (host, name)
);
INSERT INTO "ollama_deck_installed_model" VALUES('OLLAMA_URL','qwen2.5:0.5b','{"name": "qwen2.5:0.5b", "model": "qwen2.5:0.5b", "modified_at": "2026-11-26T13:40:09.029548+00:00", "size": 20100, "digest": "079cf581702e2909f0bab0dc6ea3748bcb2c7ab3b90c706154f80c31a8193990", "details": {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"], "parameter_size": "1.2B", "quantization_level": "Q4_K_M"}}',1.7957004091515967846e+09);
INSERT INTO "ollama_deck_installed_model" VALUES('OLLAMA_URL','llama3.2:1b','{"name": "llama3.2:1b", "model": "llama3.2:1b", "modified_at": "2026-11-26T13:40:08.943448+00:00", "size": 1000000, "digest": "e4832c406d16208042e078cb18bd010135bd63728936e78dd3adcbe4cb13d065", "details": {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"], "parameter_size": "1.2B", "quantization_level": "Q4_K_M"}}',1.7957004091515967846e+09);
CREATE TABLE ollama_deck_operation (
	id VARCHAR(36) NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	model VARCHAR(600) NOT NULL, 
	model_key VARCHAR(600) NOT NULL, 
	host VARCHAR(600) NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	phase VARCHAR(16), 
	percent FLOAT NOT NULL, 
	completed_bytes BIGINT NOT NULL, 
	total_bytes BIGINT NOT NULL, 
	speed FLOAT, 
	eta_seconds FLOAT, 
	message TEXT, 
	error TEXT, 
	cancel_requested BOOLEAN NOT NULL, 
	attempts INTEGER NOT NULL, 
	created_at FLOAT NOT NULL, 
	updated_at FLOAT NOT NULL, 
	started_at FLOAT, 
	finished_at FLOAT, 
	heartbeat_at FLOAT, 
	runner_id VARCHAR(120), 
	seq BIGINT NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO "ollama_deck_operation" VALUES('c0f1a936-844c-4d52-b2c9-e9812e127e1f','pull','qwen2.5:0.5b','qwen2.5:0.5b','OLLAMA_URL','succeeded','done',100.0,20100,20100,NULL,0.0,'pulled',NULL,0,1,1.79570040899883484834e+09,1.79570040905884075162e+09,1.79570040900730895994e+09,1.7957004090588243008e+09,1.79570040905373382563e+09,'vm:9979:ef748a87',30);
INSERT INTO "ollama_deck_operation" VALUES('c96e925c-ec68-4e27-9772-d8942371e615','pull','phi3:mini','phi3:mini','OLLAMA_URL','failed','downloading',30.0,6000,20000,NULL,NULL,'Ollama: max retries exceeded: unexpected EOF','max retries exceeded: unexpected EOF',0,1,1.79570040902077937127e+09,1.7957004090501291752e+09,1.79570040902816152571e+09,1.79570040905009865764e+09,1.79570040904530692097e+09,'vm:9979:ef748a87',26);
CREATE TABLE ollama_deck_operation_log (
	seq BIGINT NOT NULL, 
	operation_id VARCHAR(36) NOT NULL, 
	created_at FLOAT NOT NULL, 
	text TEXT NOT NULL, 
	PRIMARY KEY (seq)
);
INSERT INTO "ollama_deck_operation_log" VALUES(1,'c0f1a936-844c-4d52-b2c9-e9812e127e1f',1.79570040899883484834e+09,'pull of qwen2.5:0.5b queued');
INSERT INTO "ollama_deck_operation_log" VALUES(4,'c0f1a936-844c-4d52-b2c9-e9812e127e1f',1.79570040901346158982e+09,'pulling qwen2.5:0.5b from OLLAMA_URL');
INSERT INTO "ollama_deck_operation_log" VALUES(6,'c96e925c-ec68-4e27-9772-d8942371e615',1.79570040902077937127e+09,'pull of phi3:mini queued');
INSERT INTO "ollama_deck_operation_log" VALUES(9,'c0f1a936-844c-4d52-b2c9-e9812e127e1f',1.79570040902933192252e+09,'pulling manifest');
INSERT INTO "ollama_deck_operation_log" VALUES(11,'c96e925c-ec68-4e27-9772-d8942371e615',1.79570040903146576878e+09,'pulling phi3:mini from OLLAMA_URL');
INSERT INTO "ollama_deck_operation_log" VALUES(13,'c0f1a936-844c-4d52-b2c9-e9812e127e1f',1.79570040903797841069e+09,'pulling 1e69bfef39a6');
INSERT INTO "ollama_deck_operation_log" VALUES(15,'c96e925c-ec68-4e27-9772-d8942371e615',1.79570040904271340364e+09,'pulling manifest');
INSERT INTO "ollama_deck_operation_log" VALUES(17,'c0f1a936-844c-4d52-b2c9-e9812e127e1f',1.79570040904383110996e+09,'pulling 408bf3d1249f');
INSERT INTO "ollama_deck_operation_log" VALUES(19,'c96e925c-ec68-4e27-9772-d8942371e615',1.79570040904530858986e+09,'pulling 1c755af908b9');
INSERT INTO "ollama_deck_operation_log" VALUES(21,'c0f1a936-844c-4d52-b2c9-e9812e127e1f',1.79570040904791331298e+09,'verifying sha256 digest');
INSERT INTO "ollama_deck_operation_log" VALUES(23,'c0f1a936-844c-4d52-b2c9-e9812e127e1f',1.79570040905173611634e+09,'writing manifest');
INSERT INTO "ollama_deck_operation_log" VALUES(25,'c96e925c-ec68-4e27-9772-d8942371e615',1.7957004090501291752e+09,'Ollama: max retries exceeded: unexpected EOF');
INSERT INTO "ollama_deck_operation_log" VALUES(27,'c0f1a936-844c-4d52-b2c9-e9812e127e1f',1.79570040905373573296e+09,'success');
INSERT INTO "ollama_deck_operation_log" VALUES(29,'c0f1a936-844c-4d52-b2c9-e9812e127e1f',1.79570040905884075162e+09,'pulled');
CREATE TABLE ollama_deck_setting (
	"key" VARCHAR(200) NOT NULL, 
	value TEXT, 
	updated_at FLOAT NOT NULL, 
	PRIMARY KEY ("key")
);
INSERT INTO "ollama_deck_setting" VALUES('active_model','llama3.2:1b',1.79570040910096812253e+09);
CREATE INDEX ix_ollama_deck_operation_status ON ollama_deck_operation (status);
CREATE UNIQUE INDEX ollama_deck_one_active_per_model ON ollama_deck_operation (host, model_key) WHERE status IN ('queued', 'running');
CREATE INDEX ix_ollama_deck_operation_seq ON ollama_deck_operation (seq);
CREATE INDEX ix_ollama_deck_operation_log_operation_id ON ollama_deck_operation_log (operation_id);
COMMIT;
